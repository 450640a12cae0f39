"""`w2s serve`: a small OpenAI-compatible completions server over the `hf` backend.

Good for small models, for testing the `openai` backend end to end, and for sharing one
loaded model between several processes. Standard library only (http.server). Concurrent
requests with the same sampling settings are gathered for a few milliseconds and decoded as
one batch, so a client with bounded concurrency gets batched throughput.

    w2s serve --model DIR --port 8000     # then: --backend openai --base-url http://127.0.0.1:8000/v1

Every request is bounded before it reaches the model: body size (413), Content-Length (411/400),
max_tokens (at most the model's context), prompts (each must leave room in the context), n
and prompts x n, finite sampling numbers; a slow client times out. With an API key (`--api-key`
or W2S_API_KEY), requests need `Authorization: Bearer KEY` (401 otherwise).
"""

from __future__ import annotations

import hmac
import json
import math
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from w2s.generation.sampling import SamplingConfig, WorkItem, derive_seed


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


#: Defaults for the request bounds (make_server / `w2s serve` options change them).
DEFAULT_MAX_N = 64
#: Most completions one request may ask for (prompts x n).
MAX_CHOICES = 1024
DEFAULT_MAX_BODY_BYTES = 8 << 20
MAX_STOP_STRINGS = 16
#: Seconds a client may stall while sending a request (or idle on a kept-alive connection).
SOCKET_TIMEOUT = 30.0


def _integer(body: dict, key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON 1e3 arrives as a float
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be an integer, got {json.dumps(value)[:40]}")
    return value


def _real(body: dict, key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"'{key}' must be a finite number, got {json.dumps(value)[:40]}")
    return float(value)


def parse_completion_request(body: dict, served_name: str, *, context: int | None = None,
                             max_n: int = DEFAULT_MAX_N) -> tuple[list[str], SamplingConfig, int | None]:
    """Validate an OpenAI completions request; returns (prompts, sampling, seed). Every
    malformed or out-of-range field is a BadRequest naming it."""
    model = body.get("model")
    if model not in (served_name, None):
        raise BadRequest(f"model {str(model)[:100]!r} not found; this server serves {served_name!r}", 404)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings")
    stop = body.get("stop") or ()
    stop = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stop, (list, tuple)) or len(stop) > MAX_STOP_STRINGS
            or not all(isinstance(x, str) and x for x in stop)):
        raise BadRequest(f"'stop' must be a non-empty string or a list of at most {MAX_STOP_STRINGS} "
                         "non-empty strings")
    max_tokens, n = _integer(body, "max_tokens", 16), _integer(body, "n", 1)
    if max_tokens < 1 or (context is not None and max_tokens > context):
        limit = f"between 1 and the model's context of {context} tokens" if context else ">= 1"
        raise BadRequest(f"'max_tokens' must be {limit}, got {max_tokens}")
    if not 1 <= n <= max_n:
        raise BadRequest(f"'n' must be between 1 and {max_n}, got {n}")
    if len(prompts) * n > MAX_CHOICES:
        raise BadRequest(f"at most {MAX_CHOICES} completions per request (prompts x n), "
                         f"got {len(prompts)} x {n}")
    top_k = _integer(body, "top_k", 0)
    try:
        sampling = SamplingConfig(max_new_tokens=max_tokens, temperature=_real(body, "temperature", 1.0),
                                  top_p=_real(body, "top_p", 1.0), top_k=max(0, top_k),  # -1 = off
                                  n=n, stop=tuple(stop))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not -2**63 <= seed < 2**64):
        raise BadRequest("'seed' must be a 64-bit integer")
    return prompts, sampling, seed


class Batcher:
    """Runs generation on one thread; requests with identical sampling are decoded together."""

    def __init__(self, backend, gather_s: float = 0.005):
        self.backend, self.gather_s = backend, gather_s
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="w2s-serve-batcher").start()

    def submit(self, items: list[WorkItem], sampling: SamplingConfig) -> Future:
        future: Future = Future()
        self.requests.put((items, sampling, future))
        return future

    def _loop(self) -> None:
        while True:
            group = [self.requests.get()]
            deadline = time.monotonic() + self.gather_s
            others = []
            while (left := deadline - time.monotonic()) > 0:
                try:
                    req = self.requests.get(timeout=left)
                except queue.Empty:
                    break
                (group if req[1] == group[0][1] else others).append(req)
            for req in others:  # different settings: next round
                self.requests.put(req)
            self._run(group)

    def _run(self, group) -> None:
        sampling = group[0][1]
        items = [it for items, _, _ in group for it in items]
        try:
            results = {}
            for batch in self.backend.run(items, sampling):
                for r in batch:
                    results[(r["id"], r["sample_index"])] = r
            for its, _, future in group:
                future.set_result([results[(it.id, it.sample_index)] for it in its])
        except Exception as e:  # noqa: BLE001 - reported to every waiting request
            for _, _, future in group:
                future.set_exception(e)


def _checked_prompt_lengths(lm, prompts: list[str]) -> list[int]:
    """Token counts of the prompts; a prompt that leaves no room for a new token is a 400
    (answering it would mean generating past the context)."""
    from w2s.generation.hf import PromptTooLong, encode_checked

    try:
        return [len(e) for e in encode_checked(lm, prompts, [str(i) for i in range(len(prompts))])]
    except PromptTooLong as e:
        raise BadRequest(f"prompt(s) at index {', '.join(e.ids[:5])} do not fit the model's context "
                         f"of {lm.context} tokens") from None


def make_server(model: str, host: str = "127.0.0.1", port: int = 8000, *, adapter: str | None = None,
                served_name: str | None = None, api_key: str | None = None, max_n: int = DEFAULT_MAX_N,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, **hf_options) -> ThreadingHTTPServer:
    """Build (and load the model for) a server; call `serve_forever()` on it. Port 0 = any free.
    With `api_key`, every route but /health needs `Authorization: Bearer <api_key>`."""
    from w2s.generation.hf import HFBackend, load_model

    if max_n < 1 or max_body_bytes < 1:
        raise ValueError("max_n and max_body_bytes must be >= 1")
    backend = HFBackend(model, adapter=adapter, **hf_options)
    loaded = load_model(backend.model, adapter, backend.dtype, backend.device, backend.trust_remote_code)
    context = loaded.context
    name = served_name or str(model)
    batcher = Batcher(backend)
    expected_auth = f"Bearer {api_key}".encode() if api_key else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT  # a client that stalls mid-request cannot hold a thread for ever

        def log_message(self, fmt, *args):  # quiet: one line per request is noise at 1000s req/s
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, headers: dict | None = None) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            if status == 401:
                kind = "authentication_error"
            self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

        def _authorized(self) -> bool:
            if expected_auth is None:
                return True
            given = (self.headers.get("Authorization") or "").strip().encode("utf-8", "replace")
            if hmac.compare_digest(given, expected_auth):
                return True
            self.close_connection = True  # the body (if any) is not read
            self._error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                        {"WWW-Authenticate": "Bearer"})
            return False

        def do_GET(self):
            route = self.path.rstrip("/")
            if route in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            elif not self._authorized():
                return
            elif route in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "w2s"}]})
            else:
                self._error(404, f"no route {self.path}")

        def _read_body(self) -> bytes:
            """The request body, within bounds; a bad or missing length closes the connection
            (what follows on it cannot be framed)."""
            raw = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding") or raw is None:
                self.close_connection = True
                raise BadRequest("a Content-Length header is required (no chunked bodies)", 411)
            if not (raw.strip().isascii() and raw.strip().isdigit()):  # "-5", "abc", "1e3", "²"
                self.close_connection = True
                raise BadRequest(f"invalid Content-Length {raw[:40]!r}")
            length = int(raw)
            if length > max_body_bytes:
                self.close_connection = True
                raise BadRequest(f"request body of {length} bytes is over the limit of {max_body_bytes}", 413)
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                raise BadRequest("request body shorter than its Content-Length")
            return body

        def do_POST(self):
            try:
                self._post()
            except (TimeoutError, ConnectionError):
                self.close_connection = True  # the client stalled or went away: nobody to answer
            except Exception as e:  # noqa: BLE001 - a bug must not kill the connection silently
                self.close_connection = True
                try:
                    self._error(500, f"internal error: {type(e).__name__}")
                except OSError:
                    pass

        def _post(self):
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self.close_connection = True
                self._error(404, f"no route {self.path} (this server offers /v1/completions)")
                return
            if not self._authorized():
                return
            try:
                raw = self._read_body()
                try:
                    body = json.loads(raw or b"{}")
                except (ValueError, RecursionError):  # bad JSON or UTF-8, absurd nesting
                    raise BadRequest("request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise BadRequest("request body must be a JSON object")
                prompts, sampling, seed = parse_completion_request(body, name, context=context, max_n=max_n)
                prompt_lengths = _checked_prompt_lengths(loaded, prompts)
            except BadRequest as e:
                self._error(e.status, str(e))
                return
            base_seed = seed if seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little") >> 1
            request_id = uuid.uuid4().hex  # ids must not collide with other requests in a batch
            items = []
            for p_index, prompt in enumerate(prompts):
                for c in range(sampling.n):
                    index = p_index * sampling.n + c
                    # choice 0 uses the request seed itself, so a client that sends one
                    # derived seed per sample gets exactly the hf backend's sample
                    s = base_seed if index == 0 else derive_seed(base_seed, "choice", index)
                    items.append(WorkItem(f"{request_id}:{index}", prompt, 0, s))
            try:
                results = batcher.submit(items, sampling).result()
            except Exception as e:  # noqa: BLE001
                self._error(500, f"generation failed: {type(e).__name__}: {e}")
                return
            prompt_tokens = sum(prompt_lengths)
            completion_tokens = sum(r["n_tokens"] for r in results)
            self._send(200, {
                "id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()),
                "model": name,
                "choices": [{"index": i, "text": r["response"], "finish_reason": r["finish_reason"],
                             "logprobs": None} for i, r in enumerate(results)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            })

    return ThreadingHTTPServer((host, port), Handler)


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    server = make_server(model, host, port, **options)
    if not options.get("api_key") and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"w2s serve: warning: listening on {host} without an API key; anyone who can reach "
              "this port can use the model (set --api-key or W2S_API_KEY)", file=sys.stderr, flush=True)
    print(f"w2s serve: {model} on http://{server.server_address[0]}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
