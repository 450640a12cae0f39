"""The `openai` backend: any OpenAI-compatible /v1/completions endpoint (vLLM or SGLang
server, `w2s serve`, a hosted API).

One request per sample (n=1) carrying that sample's derived seed, so samples do not depend
on which other requests were in flight, and resume can ask for exactly the missing ones.
Concurrency is bounded by a thread pool; 408/429/5xx and connection errors are retried with
exponential backoff (honouring Retry-After); any other 4xx stops the run with the server's
message, since retrying a bad request only burns quota.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import time
from pathlib import Path
from typing import Iterator

from w2s.models import is_adapter_dir
from w2s.generation.sampling import GenerationError, SamplingConfig, WorkItem, cut_at_stop

RETRYABLE_STATUS = {408, 409, 429}
#: The OpenAI API accepts at most 4 stop strings; more are applied client-side.
MAX_SERVER_STOPS = 4


def served_name(model: str, adapter: str | None) -> str:
    """The `model` of a request. A LoRA adapter on a vLLM/SGLang server is addressed by its
    served name: an adapter directory (given as the model or as the adapter) by its folder's
    name: a server started with `--enable-lora --lora-modules
    sft_iter2_hybrid=runs/x/models/sft_iter2_hybrid m_pro_dpo=...` serves a run's adapters by
    their stage names."""
    if adapter is None and is_adapter_dir(model):
        adapter = model
    if adapter is None:
        return model
    return Path(adapter).name if Path(adapter).is_dir() else adapter


class OpenAIBackend:
    deduplicate_greedy = True

    def __init__(self, model: str, adapter: str | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, concurrency: int = 8, max_retries: int = 6,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, timeout_s: float = 600.0):
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise GenerationError("the openai backend needs a base URL: pass --base-url (or "
                                  "base_url=...) or set OPENAI_BASE_URL, e.g. http://127.0.0.1:8000/v1")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.served_model = served_name(model, adapter)
        self.concurrency, self.max_retries = max(1, concurrency), max_retries
        self.backoff_s, self.max_backoff_s, self.timeout_s = backoff_s, max_backoff_s, timeout_s

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        import openai

        client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                               timeout=self.timeout_s)
        pool = cf.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="w2s-openai")
        try:
            waiting = {pool.submit(self._complete, client, it, sampling) for it in items}
            while waiting:
                finished, waiting = cf.wait(waiting, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                if finished:
                    yield [f.result() for f in finished]  # re-raises a request's error
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def request_kwargs(self, item: WorkItem, sampling: SamplingConfig) -> dict:
        kwargs = {"model": self.served_model, "prompt": item.prompt,
                  "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                  "top_p": sampling.top_p, "n": 1, "seed": item.seed}
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop[:MAX_SERVER_STOPS])
        if sampling.top_k:
            kwargs["extra_body"] = {"top_k": sampling.top_k}  # vLLM / SGLang extension
        return kwargs

    def _complete(self, client, item: WorkItem, sampling: SamplingConfig) -> dict:
        response = self._with_retries(lambda: client.completions.create(**self.request_kwargs(item, sampling)))
        choice = response.choices[0]
        text, hit = cut_at_stop(choice.text or "", sampling.stop)
        reason = "length" if (choice.finish_reason == "length" and not hit) else "stop"
        usage = getattr(response, "usage", None)
        n_tokens = getattr(usage, "completion_tokens", None) or 0
        return {"id": item.id, "sample_index": item.sample_index, "response": text,
                "finish_reason": reason, "n_tokens": n_tokens}

    def _with_retries(self, call):
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return call()
            except (openai.APIConnectionError, openai.APITimeoutError) as e:  # includes timeouts
                error, wait = e, None
            except openai.APIStatusError as e:
                if e.status_code < 500 and e.status_code not in RETRYABLE_STATUS:
                    raise GenerationError(f"{self.base_url} refused the request (HTTP {e.status_code}): "
                                          f"{_server_message(e)}") from None
                error, wait = e, _retry_after(e)
            if attempt == self.max_retries:
                break
            delay = wait if wait is not None else min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
            time.sleep(delay * (1 + 0.1 * random.random()))
        raise GenerationError(f"{self.base_url}: giving up after {self.max_retries + 1} attempts: "
                              f"{_describe(error)}")


def _server_message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(e, "message", e))


def _describe(e) -> str:
    status = getattr(e, "status_code", None)
    return f"HTTP {status}: {_server_message(e)}" if status else f"{type(e).__name__}: {e}"


def _retry_after(e) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return min(float(value), 300.0) if value is not None else None
    except (AttributeError, ValueError):
        return None
