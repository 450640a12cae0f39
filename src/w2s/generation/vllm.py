"""The `vllm` backend: vLLM's offline engine, in a child process per call.

vLLM is an optional extra (`pip install 'w2s-reasoning[vllm]'`) and is imported only inside
the child. A child process per `generate` call is how GPU memory is reliably given back: the
pipeline alternates generation and training on the same GPU, and vLLM does not free its
memory pool in-process. The child streams finished records to a JSONL file that the parent
tails, so resume works here as everywhere else.

Every sample is its own request with n=1 and its derived seed (vLLM supports per-request
seeds), so samples do not depend on batch composition, exactly as in the other backends.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from w2s.generation.config import GenerationError, SamplingConfig, WorkItem, cut_at_stop

INSTALL_HINT = "pip install 'w2s-reasoning[vllm]'"


def require_vllm() -> None:
    """Fail early, in the parent, with the fix, when vLLM is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise GenerationError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT} "
                              "(or use --backend hf)")


def sampling_params_kwargs(sampling: SamplingConfig, seed: int) -> dict:
    """vLLM `SamplingParams(**kwargs)` for one sample. Pure, so it is tested without vLLM.
    top_k=-1 disables top-k on every vLLM version (0 only on recent ones)."""
    return {
        "n": 1,
        "temperature": float(sampling.temperature),
        "top_p": float(sampling.top_p) if not sampling.greedy else 1.0,
        "top_k": int(sampling.top_k) if sampling.top_k > 0 and not sampling.greedy else -1,
        "max_tokens": int(sampling.max_new_tokens),
        "stop": list(sampling.stop),
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
        "seed": int(seed),
    }


def engine_kwargs(model: str, *, adapter: str | None = None, tensor_parallel_size: int = 1,
                  dtype: str = "auto", gpu_memory_utilization: float = 0.85,
                  max_model_len: int | None = None, trust_remote_code: bool = False,
                  seed: int = 0) -> dict:
    """vLLM `LLM(**kwargs)`. With an adapter, LoRA is enabled with a rank big enough for it."""
    kwargs = {"model": str(model), "tensor_parallel_size": int(tensor_parallel_size),
              "dtype": dtype, "gpu_memory_utilization": float(gpu_memory_utilization),
              "trust_remote_code": trust_remote_code, "seed": int(seed)}
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    if adapter:
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = _lora_rank(adapter)
    return kwargs


def _lora_rank(adapter: str) -> int:
    """The smallest vLLM-supported max_lora_rank that fits the adapter's rank."""
    try:
        rank = int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
    except (OSError, KeyError, ValueError):
        rank = 16
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def finish_reason(vllm_reason: str | None, text_was_cut: bool) -> str:
    return "length" if vllm_reason == "length" and not text_was_cut else "stop"


class VLLMBackend:
    deduplicate_greedy = True

    def __init__(self, model: str, adapter: str | None = None, *, tensor_parallel_size: int = 1,
                 dtype: str = "auto", gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, trust_remote_code: bool = False,
                 chunk_size: int = 2048, **_ignored):
        require_vllm()
        self.engine = engine_kwargs(model, adapter=adapter, tensor_parallel_size=tensor_parallel_size,
                                    dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                                    max_model_len=max_model_len, trust_remote_code=trust_remote_code)
        self.adapter, self.chunk_size = adapter, chunk_size

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        with tempfile.TemporaryDirectory(prefix="w2s-vllm-") as tmp:
            job, results = Path(tmp) / "job.json", Path(tmp) / "results.jsonl"
            job.write_text(json.dumps({"engine": self.engine, "adapter": self.adapter,
                                       "sampling": asdict(sampling), "chunk_size": self.chunk_size,
                                       "items": [list(it) for it in items], "results": str(results)}))
            results.touch()
            child = subprocess.Popen([sys.executable, "-m", "w2s.generation.vllm", str(job)])
            try:
                with open(results, encoding="utf-8") as f:
                    buffer = ""
                    while True:
                        exited = child.poll() is not None
                        buffer += f.read()
                        *lines, buffer = buffer.split("\n")
                        if lines:
                            yield [json.loads(line) for line in lines if line]
                        if exited:
                            break
                        time.sleep(0.2)
                if child.returncode != 0:
                    raise GenerationError(f"the vLLM worker failed (exit code {child.returncode}); "
                                          "its log is above")
            finally:
                if child.poll() is None:
                    child.terminate()
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()


def _worker(job_path: str) -> None:
    """Child process: load vLLM once, generate chunk by chunk, append results."""
    from vllm import LLM, SamplingParams

    job = json.loads(Path(job_path).read_text())
    sampling = SamplingConfig(**{**job["sampling"], "stop": tuple(job["sampling"]["stop"])})
    llm = LLM(**job["engine"])
    lora = None
    if job["adapter"]:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest(lora_name="w2s-adapter", lora_int_id=1, lora_path=job["adapter"])
    items = [WorkItem(*it) for it in job["items"]]
    with open(job["results"], "a", encoding="utf-8") as out:
        for start in range(0, len(items), job["chunk_size"]):
            chunk = items[start:start + job["chunk_size"]]
            params = [SamplingParams(**sampling_params_kwargs(sampling, it.seed)) for it in chunk]
            outputs = llm.generate([it.prompt for it in chunk], params, lora_request=lora, use_tqdm=True)
            for it, output in zip(chunk, outputs):
                completion = output.outputs[0]
                text, cut = cut_at_stop(completion.text, sampling.stop)
                out.write(json.dumps({"id": it.id, "sample_index": it.sample_index, "response": text,
                                      "finish_reason": finish_reason(completion.finish_reason, cut),
                                      "n_tokens": len(completion.token_ids)}) + "\n")
            out.flush()
            os.fsync(out.fileno())


if __name__ == "__main__":
    _worker(sys.argv[1])
