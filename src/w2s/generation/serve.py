"""`w2s serve`: a small OpenAI-compatible completions server over the `hf` backend, on a real
ASGI server (Starlette on uvicorn). For small models, for testing the `openai` backend end to
end and for sharing one loaded model between processes; on GPUs, vLLM's own server
(`python -m vllm.entrypoints.openai.api_server`, or `vllm serve`) is the one to use.

    w2s serve --model DIR --port 8000     # then: --backend openai --base-url http://127.0.0.1:8000/v1

Every request is bounded before it reaches the model (serve_request: fields, sampling, sizes)
and while it waits: the body must arrive within `request_timeout_s` (408), at most
`max_queued` requests wait for the model (429 past it, with Retry-After), uvicorn caps open
connections (`max_connections`, 503 past it) and the listen backlog is large. Generation runs
on one thread; requests with the same sampling settings are decoded together, and a request
whose client went away is dropped between decoding batches, so it never holds the model for the
next one. With an API key (`--api-key` or W2S_API_KEY; an empty one is refused at start), every
route but /health needs `Authorization: Bearer KEY` (compared as bytes, in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from w2s.generation.serve_batcher import Batcher, Cancelled
from w2s.generation.serve_request import DEFAULT_MAX_N, BadRequest, parse_completion_request
from w2s.generation.sampling import WorkItem, derive_seed

DEFAULT_MAX_BODY_BYTES = 8 << 20
#: seconds a client may take to send its request body
SOCKET_TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Limits:
    max_n: int = DEFAULT_MAX_N
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout_s: float = SOCKET_TIMEOUT
    max_queued: int = 64            # requests waiting for the model; past it: 429
    max_connections: int = 512      # open connections (uvicorn's limit_concurrency); past it: 503
    backlog: int = 2048


def error(status: int, message: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    kind = "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class CompletionService:
    """The routes' logic: authorization, the request's bounds, generation, the response."""

    def __init__(self, loaded, batcher: Batcher, name: str, api_key: str | None, limits: Limits,
                 allowed_hosts: tuple[str, ...] | None):
        self.loaded, self.batcher, self.name, self.limits = loaded, batcher, name, limits
        self.expected_auth = f"Bearer {api_key}".encode("utf-8") if api_key is not None else None
        self.allowed_hosts = allowed_hosts

    def refusal(self, request, needs_auth: bool = True):
        """A response refusing the request's headers (host, auth), or None."""
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return error(400, f"Host {host[:60]!r} is not served here (DNS rebinding guard: {', '.join(self.allowed_hosts)})")
        if needs_auth and self.expected_auth is not None:
            given = (request.headers.get("authorization") or "").strip().encode("latin-1")  # the raw bytes
            if not hmac.compare_digest(given, self.expected_auth):
                return error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                             {"WWW-Authenticate": "Bearer"})
        return None

    async def read_body(self, request) -> dict:
        lengths = request.headers.getlist("content-length")
        if len(lengths) > 1:
            raise BadRequest("more than one Content-Length header")
        if request.headers.get("transfer-encoding") or not lengths:
            raise BadRequest("a Content-Length header is required (no chunked bodies)", 411)
        raw = lengths[0].strip()
        if not (raw.isascii() and raw.isdigit()):  # "-5", "abc", "1e3", "²"
            raise BadRequest(f"invalid Content-Length {raw[:40]!r}")
        if int(raw) > self.limits.max_body_bytes:
            raise BadRequest(f"request body of {int(raw)} bytes is over the limit of {self.limits.max_body_bytes}", 413)
        if "json" not in (request.headers.get("content-type") or "application/json").lower():
            raise BadRequest("Content-Type must be application/json", 415)
        try:
            data = await asyncio.wait_for(request.body(), self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise BadRequest(f"request body not received within {self.limits.request_timeout_s:g} s", 408) from None
        return parse_json_object(data)

    async def complete(self, request):
        from starlette.concurrency import run_in_threadpool

        refused = self.refusal(request)
        if refused is not None:
            return refused
        try:
            body = await self.read_body(request)
            prompts, sampling, seed = parse_completion_request(body, self.name, context=self.loaded.context,
                                                               max_n=self.limits.max_n)
            lengths = await run_in_threadpool(checked_prompt_lengths, self.loaded, prompts)
        except BadRequest as e:
            return error(e.status, str(e))
        if self.batcher.waiting() >= self.limits.max_queued:
            return error(429, f"server busy: {self.batcher.waiting()} requests are waiting for the model",
                         {"Retry-After": "1"})
        request_id = uuid.uuid4().hex  # ids must not collide with other requests in a batch
        items = work_items(request_id, prompts, sampling.n, seed)
        try:
            results = await self.await_or_cancel(request, self.batcher.submit(items, sampling))
        except Cancelled:
            return error(499, "client closed the request")
        except Exception as e:  # noqa: BLE001 - reported as a 500 naming the error
            return error(500, f"generation failed: {type(e).__name__}: {e}")
        return completion_response(request_id, self.name, results, sum(lengths))

    async def await_or_cancel(self, request, job):
        """The job's results; if the client goes away first, the job is cancelled (its remaining
        decoding batches are dropped) and Cancelled is raised."""
        future = asyncio.wrap_future(job.future)
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.25)
            if done:
                return future.result()
            if await request.is_disconnected():
                job.cancel()
                future.add_done_callback(lambda f: f.exception())  # settled later, by the batcher
                raise Cancelled(job.request_id)


def parse_json_object(data: bytes) -> dict:
    try:
        body = json.loads(data or b"{}")
    except (ValueError, RecursionError):  # bad JSON or UTF-8, absurd nesting
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def checked_prompt_lengths(loaded, prompts: list[str]) -> list[int]:
    """Token counts of the prompts; one that leaves no room for a new token is a 400."""
    from w2s.generation.hf import PromptTooLong, encode_checked

    try:
        return [len(e) for e in encode_checked(loaded, prompts, [str(i) for i in range(len(prompts))])]
    except PromptTooLong as e:
        raise BadRequest(f"prompt(s) at index {', '.join(e.ids[:5])} do not fit the model's context "
                         f"of {loaded.context} tokens") from None


def work_items(request_id: str, prompts: list[str], n: int, seed: int | None) -> list[WorkItem]:
    """One item per completion. Choice 0 uses the request's seed itself, so a client that sends
    one derived seed per sample gets exactly the hf backend's sample."""
    base = seed if seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little") >> 1
    items = []
    for p_index, prompt in enumerate(prompts):
        for c in range(n):
            index = p_index * n + c
            items.append(WorkItem(f"{request_id}:{index}", prompt, 0,
                                  base if index == 0 else derive_seed(base, "choice", index)))
    return items


def completion_response(request_id: str, name: str, results: list[dict], prompt_tokens: int):
    from starlette.responses import JSONResponse

    completion_tokens = sum(r["n_tokens"] for r in results)
    return JSONResponse({
        "id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()), "model": name,
        "choices": [{"index": i, "text": r["response"], "finish_reason": r["finish_reason"], "logprobs": None}
                    for i, r in enumerate(results)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}})


def build_app(service: CompletionService):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request):
        return service.refusal(request, needs_auth=False) or JSONResponse({"status": "ok"})

    async def models(request):
        return service.refusal(request) or JSONResponse(
            {"object": "list", "data": [{"id": service.name, "object": "model", "owned_by": "w2s"}]})

    async def not_found(request, exc):
        return error(404, f"no route {request.url.path} (this server offers /v1/completions)")

    async def server_error(request, exc):
        return error(500, f"internal error: {type(exc).__name__}")

    routes = [Route(p, health) for p in ("/health", "/v1/health")] + \
        [Route(p, models) for p in ("/v1/models", "/models")] + \
        [Route(p, service.complete, methods=["POST"]) for p in ("/v1/completions", "/completions")]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, 500: server_error})


def json_errors_protocol():
    """uvicorn's h11 protocol, answering a request it cannot parse (bad or conflicting
    Content-Length, malformed request line or headers) with the same JSON error body as every
    other refusal, instead of plain text."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorsH11(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": {"message": "invalid HTTP request (request line or headers, e.g. a "
                                                    "malformed or conflicting Content-Length)",
                                         "type": "invalid_request_error", "code": 400}}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JSONErrorsH11


class Server:
    """A bound socket and the uvicorn server that will answer on it: `server_address` is known
    before `serve_forever()` (port 0 = any free port); `shutdown()` stops it from another thread."""

    def __init__(self, app, host: str, port: int, limits: Limits):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, http=json_errors_protocol(), log_level="error", access_log=False, lifespan="off",
                                limit_concurrency=limits.max_connections, backlog=limits.backlog,
                                timeout_keep_alive=max(1, int(limits.request_timeout_s)))
        self.uvicorn = uvicorn.Server(config)
        self.stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        self.stopped.wait(10)

    def server_close(self) -> None:
        self.socket.close()


def make_server(model: str, host: str = "127.0.0.1", port: int = 8000, *, adapter: str | None = None,
                served_name: str | None = None, api_key: str | None = None, max_n: int = DEFAULT_MAX_N,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_queued: int = 64,
                max_connections: int = 512, **hf_options) -> Server:
    """Load the model and build a server on HOST:PORT (call `serve_forever()`). An empty
    `api_key` is refused: it would silently mean "no authentication"."""
    from w2s.generation.hf import HFBackend, load_model

    if api_key == "":
        raise ValueError("the API key is empty (--api-key / W2S_API_KEY): give a key, or unset it to serve "
                         "without authentication")
    if max_n < 1 or max_body_bytes < 1 or max_queued < 1 or max_connections < 1:
        raise ValueError("max_n, max_body_bytes, max_queued and max_connections must be >= 1")
    limits = Limits(max_n=max_n, max_body_bytes=max_body_bytes, request_timeout_s=SOCKET_TIMEOUT,
                    max_queued=max_queued, max_connections=max_connections)
    backend = HFBackend(model, adapter=adapter, **hf_options)
    loaded = load_model(backend.model, adapter, backend.dtype, backend.device, backend.trust_remote_code)
    allowed = LOOPBACK if host in LOOPBACK else None  # a loopback server answers loopback names only
    service = CompletionService(loaded, Batcher(backend), served_name or str(model), api_key, limits, allowed)
    return Server(build_app(service), host, port, limits)


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    server = make_server(model, host, port, **options)
    if not options.get("api_key") and host not in LOOPBACK:
        print(f"w2s serve: warning: listening on {host} without an API key; anyone who can reach "
              "this port can use the model (set --api-key or W2S_API_KEY)", file=sys.stderr, flush=True)
    print(f"w2s serve: {model} on http://{server.server_address[0]}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
