"""`w2s serve`: a small OpenAI-compatible completions server over the `hf` backend.

Good for small models, for testing the `openai` backend end to end, and for sharing one
loaded model between several processes. Standard library only (http.server). Concurrent
requests with the same sampling settings are gathered for a few milliseconds and decoded as
one batch, so a client with bounded concurrency gets batched throughput.

    w2s serve --model DIR --port 8000     # then: --backend openai --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from w2s.generation.config import SamplingConfig, WorkItem, derive_seed


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_completion_request(body: dict, served_name: str) -> tuple[list[str], SamplingConfig, int | None]:
    """Validate an OpenAI completions request; returns (prompts, sampling, seed)."""
    model = body.get("model")
    if model not in (served_name, None):
        raise BadRequest(f"model {model!r} not found; this server serves {served_name!r}", 404)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    try:
        sampling = SamplingConfig(max_new_tokens=int(body.get("max_tokens", 16)),
                                  temperature=float(body.get("temperature", 1.0)),
                                  top_p=float(body.get("top_p", 1.0)),
                                  top_k=max(0, int(body.get("top_k", 0) or 0)),
                                  n=int(body.get("n", 1)), stop=stop)
    except (TypeError, ValueError) as e:
        raise BadRequest(str(e)) from None
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise BadRequest("'seed' must be an integer")
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


def make_server(model: str, host: str = "127.0.0.1", port: int = 8000, *, adapter: str | None = None,
                served_name: str | None = None, **hf_options) -> ThreadingHTTPServer:
    """Build (and load the model for) a server; call `serve_forever()` on it. Port 0 = any free."""
    from w2s.generation.hf import HFBackend, encode_prompts, load_model

    backend = HFBackend(model, adapter=adapter, **hf_options)
    loaded = load_model(backend.model, adapter, backend.dtype, backend.device, backend.trust_remote_code)
    name = served_name or str(model)
    batcher = Batcher(backend)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: one line per request is noise at 1000s req/s
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "w2s"}]})
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self._error(404, f"no route {self.path} (this server offers /v1/completions)")
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("request body must be a JSON object")
                prompts, sampling, seed = parse_completion_request(body, name)
            except json.JSONDecodeError:
                self._error(400, "request body is not valid JSON")
                return
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
            prompt_tokens = sum(len(x) for x in encode_prompts(loaded, prompts))
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
    print(f"w2s serve: {model} on http://{server.server_address[0]}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
