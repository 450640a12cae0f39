"""The openai backend against real HTTP servers on 127.0.0.1: `w2s serve` over the tiny model,
and a scripted server for 429/5xx retries and 4xx errors."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from w2s.generation import GenerationError, SamplingConfig, generate
from w2s.generation.serve import make_server
from w2s.io import read_jsonl

PROMPTS = [{"id": f"q{i}", "prompt": f"Question: What is {i} plus {i + 3}?\nAnswer:"} for i in range(6)]


def start(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1"


@pytest.fixture(scope="module")
def served(tiny_model):
    server = make_server(str(tiny_model), "127.0.0.1", 0, served_name="tiny", batch_size=8)
    yield start(server)
    server.shutdown()
    server.server_close()


def test_openai_backend_matches_hf_backend(served, tiny_model):
    """Per-sample seeds travel with each request, so the server reproduces the hf backend."""
    for sampling in (SamplingConfig(max_new_tokens=8, stop=(" the",)),
                     SamplingConfig(max_new_tokens=8, temperature=1.0, n=2, seed=4)):
        remote = generate("tiny", PROMPTS, sampling, backend="openai", base_url=served, concurrency=4,
                          progress=False)
        local = generate(str(tiny_model), PROMPTS, sampling, progress=False)
        assert [r["response"] for r in remote] == [r["response"] for r in local]
        assert [r["finish_reason"] for r in remote] == [r["finish_reason"] for r in local]
        assert [r["n_tokens"] for r in remote] == [r["n_tokens"] for r in local]
        assert remote[0]["model"] == "tiny"


def test_openai_resume_asks_only_missing(served, tmp_path, monkeypatch):
    from w2s.generation import openai_backend

    sampling = SamplingConfig(max_new_tokens=5, temperature=1.0, n=2, seed=1)
    path = tmp_path / "g.jsonl"
    full = generate("tiny", PROMPTS, sampling, backend="openai", base_url=served, progress=False)
    path.write_text("".join(json.dumps(r) + "\n" for r in full[:5]))
    asked = []
    real = openai_backend.OpenAIBackend._complete
    monkeypatch.setattr(openai_backend.OpenAIBackend, "_complete",
                        lambda self, client, item, s: asked.append(item.id) or real(self, client, item, s))
    resumed = generate("tiny", PROMPTS, sampling, backend="openai", base_url=served, out_path=path,
                       progress=False)
    assert resumed == full and len(asked) == len(full) - 5
    assert read_jsonl(path) == full


def test_unknown_model_is_a_clear_4xx_error(served):
    with pytest.raises(GenerationError, match=r"HTTP 404.*not found"):
        generate("other", PROMPTS[:1], SamplingConfig(max_new_tokens=4), backend="openai",
                 base_url=served, progress=False)


def test_missing_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(GenerationError, match="base URL"):
        generate("m", PROMPTS[:1], SamplingConfig(max_new_tokens=4), backend="openai", progress=False)


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, body) pairs, then succeeds."""

    script: list = []
    calls: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(body)
        status, payload = self.script.pop(0) if self.script else (200, {
            "id": "c", "object": "text_completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "text": "4 + 4 = 8\nQuestion: next", "finish_reason": "length",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    Scripted.script, Scripted.calls = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    yield start(server), Scripted
    server.shutdown()
    server.server_close()


def test_retries_429_and_5xx_with_backoff(scripted):
    url, handler = scripted
    handler.script = [(429, {"error": {"message": "slow down"}}), (503, {"error": {"message": "busy"}}),
                      (500, {"error": {"message": "oops"}})]
    out = generate("m", PROMPTS[:1], SamplingConfig(max_new_tokens=9, stop=("\nQuestion:",), seed=2),
                   backend="openai", base_url=url, backoff_s=0.01, progress=False)
    assert len(handler.calls) == 4
    assert out[0]["response"] == "4 + 4 = 8" and out[0]["finish_reason"] == "stop"
    assert out[0]["n_tokens"] == 9
    sent = handler.calls[-1]
    assert sent["max_tokens"] == 9 and sent["stop"] == ["\nQuestion:"] and sent["n"] == 1
    assert isinstance(sent["seed"], int)


def test_gives_up_after_max_retries(scripted):
    url, handler = scripted
    handler.script = [(502, {"error": {"message": "bad gateway"}})] * 3
    with pytest.raises(GenerationError, match=r"giving up after 3 attempts.*502"):
        generate("m", PROMPTS[:1], SamplingConfig(max_new_tokens=4), backend="openai", base_url=url,
                 max_retries=2, backoff_s=0.01, progress=False)


def test_4xx_is_not_retried(scripted):
    url, handler = scripted
    handler.script = [(400, {"error": {"message": "max_tokens is too large"}})]
    with pytest.raises(GenerationError, match=r"HTTP 400.*max_tokens is too large"):
        generate("m", PROMPTS[:1], SamplingConfig(max_new_tokens=4), backend="openai", base_url=url,
                 backoff_s=0.01, progress=False)
    assert len(handler.calls) == 1


def test_adapters_are_asked_for_by_their_served_names(tmp_path):
    """A run's adapter directory (given as the model, or as the adapter) is asked for by its
    folder's name: the name `--lora-modules NAME=PATH` gives it on a vLLM server."""
    from w2s.generation.openai_backend import served_name

    adapter = tmp_path / "models" / "m_pro_dpo"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "org/base", "r": 8}')
    assert served_name(str(adapter), None) == "m_pro_dpo"
    assert served_name("org/base", str(adapter)) == "m_pro_dpo"
    assert served_name("org/base", "my-lora") == "my-lora" and served_name("org/base", None) == "org/base"
