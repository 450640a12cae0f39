"""Bounded requests and inputs: `w2s serve` as a real process on 127.0.0.1 with the toy model
(huge max_tokens / n, malformed Content-Length, bad fields, prompts past the context, the API
key, memory), and the hf backend's own bounds (prompts past the context refused by id before
anything is written, new tokens capped at the context, sampling unchanged by chunked draws)."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from w2s.generation import SamplingConfig, generate
from w2s.generation import hf as hf_backend
from w2s.generation import hf_decode
from w2s.toy import checkpoint_path

SRC = str(Path(__file__).resolve().parents[1] / "src")
KEY = "s3cret-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "Question: Ann has 3 apples and buys 2 more. How many apples does Ann have?\nAnswer:"


def model_dir() -> str:
    return str(checkpoint_path("weak"))


def context() -> int:
    return json.loads((Path(model_dir()) / "config.json").read_text())["max_position_embeddings"]


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server():
    """`w2s serve` in its own process, API key from the environment, port chosen by the OS."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "W2S_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "w2s", "serve", "-m", model_dir(), "--port", "0",
                             "--device", "cpu", "--max-n", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline, out = time.monotonic() + 120, b""
    while b"/v1" not in out.split(b"w2s serve:")[-1] or b"w2s serve:" not in out:
        assert proc.poll() is None and time.monotonic() < deadline, out.decode(errors="replace")
        if select.select([proc.stdout], [], [], 1)[0]:
            out += os.read(proc.stdout.fileno(), 4096)
    port = int(out.split(b"w2s serve:")[-1].split(b"/v1")[0].rsplit(b":", 1)[1])
    yield proc, port
    proc.terminate()
    proc.wait(10)


def request(port: int, method: str = "POST", path: str = "/v1/completions", body=None,
            headers: dict | None = None, raw: bytes | None = None, timeout: float = 10):
    """(status, parsed JSON body, seconds). `headers` values of None are not sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    start = time.monotonic()
    conn.putrequest(method, path)
    for k, v in headers.items():
        if v is not None:
            conn.putheader(k, v)
    conn.endheaders()
    if data:
        conn.send(data)
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload, time.monotonic() - start


def completion(port, **fields):
    return request(port, body={"prompt": PROMPT, "max_tokens": 4, **fields}, headers=AUTH)


# ---------------------------------------------------------------- serve

def test_huge_max_tokens_and_n_are_4xx_quickly_with_memory_bounded(server):
    proc, port = server
    ctx = context()
    before = rss_mb(proc.pid)
    for fields in ({"max_tokens": 10**8, "temperature": 1.0}, {"max_tokens": 1e9, "temperature": 1.0},
                   {"max_tokens": ctx + 1}, {"n": 10**6}, {"n": 9}, {"n": 0}, {"max_tokens": 0},
                   {"prompt": [PROMPT] * 200, "n": 8}):
        status, payload, seconds = completion(port, **fields)
        assert 400 <= status < 500 and seconds < 5, (fields, status, seconds)
        assert payload["error"]["message"], fields
    assert rss_mb(proc.pid) - before < 50
    # the largest allowed request: sampling may run to the context and no further
    status, payload, _ = completion(port, max_tokens=ctx, temperature=1.0, seed=1, n=2)
    assert status == 200 and len(payload["choices"]) == 2
    assert payload["usage"]["completion_tokens"] <= 2 * (ctx - payload["usage"]["prompt_tokens"])
    assert rss_mb(proc.pid) - before < 200


def test_prompt_past_the_context_is_400(server):
    _, port = server
    status, payload, _ = completion(port, prompt="Question: " + "seven " * (2 * context()) + "\nAnswer:")
    assert status == 400 and "context" in payload["error"]["message"]
    status, payload, _ = completion(port, prompt=[PROMPT, "x " * (100 * context())])
    assert status == 400 and "index 1" in payload["error"]["message"]


@pytest.mark.parametrize("length,status", [("abc", 400), ("-5", 400), ("false", 400), ("", 400), ("1e3", 400),
                                           (None, 411), ("99999999999", 413), (str((8 << 20) + 1), 413)])
def test_malformed_content_length_is_answered_quickly(server, length, status):
    _, port = server  # the body is not sent: the answer must come from the headers alone
    got, payload, seconds = request(port, raw=b"", headers={**AUTH, "Content-Length": length})
    assert got == status and seconds < 5 and payload["error"]["message"]
    assert completion(port)[0] == 200  # the server is still fine


@pytest.mark.parametrize("raw", [
    b'{"prompt": "x", "stop": 5}', b'{"prompt": "x", "stop": [1]}', b'{"prompt": "x", "stop": [""]}',
    b'{"prompt": "x", "temperature": NaN}', b'{"prompt": "x", "temperature": Infinity}',
    b'{"prompt": "x", "temperature": -1}', b'{"prompt": "x", "top_p": 0}', b'{"prompt": "x", "top_p": 1.5}',
    b'{"prompt": "x", "top_p": -Infinity}', b'{"prompt": "x", "max_tokens": "many"}',
    b'{"prompt": "x", "max_tokens": 2.5}', b'{"prompt": "x", "n": true}', b'{"prompt": "x", "seed": "s"}',
    b'{"prompt": "x", "top_k": []}', b'{"prompt": 5}', b'{"prompt": []}', b"[1, 2]", b"{not json",
    b"\xff\xfe", b"[" * 100_000,
])
def test_bad_fields_are_400_with_a_json_error(server, raw):
    _, port = server
    status, payload, _ = request(port, raw=raw, headers=AUTH)
    assert status == 400 and payload["error"]["type"] == "invalid_request_error", raw[:40]


def test_api_key_required(server):
    _, port = server
    body = {"prompt": PROMPT, "max_tokens": 2}
    assert request(port, body=body)[0] == 401
    assert request(port, body=body, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(port, body=body, headers={"Authorization": KEY})[0] == 401  # no scheme
    assert request(port, "GET", "/v1/models", headers={"Content-Length": None})[0] == 401
    assert request(port, "GET", "/health", headers={"Content-Length": None})[0] == 200
    status, payload, _ = request(port, body=body, headers=AUTH)
    assert status == 200 and payload["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_stalled_client_times_out_and_frees_its_handler(monkeypatch):
    from w2s.generation import serve

    monkeypatch.setattr(serve, "SOCKET_TIMEOUT", 1.0)
    srv = serve.make_server(model_dir(), "127.0.0.1", 0, device="cpu", api_key="k")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
                     b"Content-Length: 100\r\n\r\n{\"prompt\"")  # and then nothing
        start = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):  # a 408, then the server hangs up on its own
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer, answer[:200]
        assert time.monotonic() - start < 5
        sock.close()
        assert request(port, body={"prompt": PROMPT, "max_tokens": 2},
                       headers={"Authorization": "Bearer k"})[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- hf backend

def test_prompts_past_the_context_are_refused_by_id_and_nothing_is_written(tmp_path, monkeypatch):
    ctx = context()
    tokenized = []
    real = hf_backend.encode_prompts
    monkeypatch.setattr(hf_backend, "encode_prompts",
                        lambda lm, ps: tokenized.extend(len(p) for p in ps) or real(lm, ps))
    prompts = [{"id": "fine", "prompt": PROMPT},
               {"id": "long", "prompt": "Question: " + "seven " * (2 * ctx) + "\nAnswer:"},
               {"id": "huge", "prompt": "x" * (ctx * hf_backend.MAX_CHARS_PER_TOKEN + 1)}]
    out = tmp_path / "g.jsonl"
    with pytest.raises(hf_backend.PromptTooLong, match=r"2 prompt\(s\).*'long', 'huge'") as err:
        generate(model_dir(), prompts, SamplingConfig(max_new_tokens=4), out_path=out, progress=False,
                 device="cpu")
    assert err.value.ids == ["long", "huge"]
    assert not out.exists()
    assert max(tokenized) < len(prompts[2]["prompt"])  # the huge one was never tokenized


def test_new_tokens_stop_at_the_context():
    lm = hf_backend.load_model(model_dir(), device="cpu")
    prompt = hf_backend.encode_prompts(lm, ["Question: " + "seven " * lm.context])[0][:lm.context - 20]
    short = hf_backend.encode_prompts(lm, [PROMPT])[0]
    room = lm.context - len(prompt)
    free = SamplingConfig(max_new_tokens=10**6, temperature=1.0)  # never allocated: capped first
    out = hf_backend.decode_batch(lm, [prompt, short], [3, 4], free)
    assert out[0]["n_tokens"] <= room
    assert (out[0]["finish_reason"], out[0]["n_tokens"]) == ("length", room) or out[0]["finish_reason"] == "stop"


def test_chunked_uniform_draws_give_the_same_samples(monkeypatch):
    """Each row's uniform stream is read in chunks; any chunk size gives the same samples as
    drawing all max_new_tokens numbers at once."""
    import torch

    lm = hf_backend.load_model(model_dir(), device="cpu")
    encoded = hf_backend.encode_prompts(lm, [PROMPT, "Question: What is 7 times 8?\nAnswer:"])
    sampling = SamplingConfig(max_new_tokens=40, temperature=1.0, top_p=0.9)
    seeds = [11, 12]
    results = []
    for chunk in (1000, 7, 1):
        monkeypatch.setattr(hf_decode, "UNIFORM_CHUNK", chunk)
        results.append(hf_backend.decode_batch(lm, encoded, seeds, sampling))
    assert results[0] == results[1] == results[2]
    # and the stream is the one a single up-front draw gives (what earlier versions did)
    whole = torch.rand(40, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    g = torch.Generator().manual_seed(11)
    parts = torch.cat([torch.rand(7, generator=g, dtype=torch.float64) for _ in range(6)])[:40]
    assert torch.equal(whole, parts)
