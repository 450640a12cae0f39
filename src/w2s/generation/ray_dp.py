"""Data-parallel vLLM generation on Ray: N engine replicas behind Ray Data's LLM processor.

`generate(..., backend="vllm", data_parallel=N)` (`w2s generate --data-parallel N`,
`generation.options.data_parallel: N`) sends the pending work items through
`ray.data.llm.build_processor` with N vLLM replicas. It connects to the cluster named by
RAY_ADDRESS (`ray start --head` on one node, `ray start --address HEAD:6379` on the others)
or starts a local one for the run. Records are identical to a single engine's: every item
carries its own seed, and results stream back to the runner, which appends them to the output
file, so an interrupted run resumes with only the missing (id, sample_index) pairs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from w2s.generation.sampling import GenerationError, SamplingConfig, WorkItem, cut_at_stop
from w2s.generation.vllm_params import sampling_params_kwargs

RAY_HINT = "pip install 'ray[data]>=2.60'"
FLUSH_EVERY = 64  # records handed to the runner (and so to disk) at a time


def processor_config_kwargs(engine: dict, replicas: int, batch_size: int = 32) -> dict:
    """`vLLMEngineProcessorConfig(**kwargs)` for the single-engine kwargs `engine`. Pure.
    chat_template_stage=False: prompts are already formatted by the task. log_engine_metrics
    off: it needs Ray's Prometheus exporter, without which the engine dies. On CPU (a KV cache
    size in bytes is how `engine_kwargs` marks it) each replica asks Ray for one CPU instead
    of the default GPU bundle."""
    kwargs = {"model_source": engine["model"],
              "engine_kwargs": {k: v for k, v in engine.items() if k != "model"},
              "concurrency": int(replicas), "batch_size": int(batch_size),
              "chat_template_stage": False, "log_engine_metrics": False}
    if "kv_cache_memory_bytes" in engine:
        kwargs["placement_group_config"] = {"bundles": [{"CPU": 1}]}
    return kwargs


def eos_token_ids(model: str) -> set[int]:
    """EOS ids from the model's generation_config.json / config.json (local models only)."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        try:
            value = json.loads((Path(model) / name).read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def to_result(row: dict, sampling: SamplingConfig, eos: set[int]) -> dict:
    """A raw result from one processor output row. The processor does not report vLLM's finish
    reason, so stop strings are kept in the output (include_stop_str_in_output) and cut here:
    a cut or an EOS token means "stop", max_new_tokens reached without either means "length"
    (the single-engine rule)."""
    text, cut = cut_at_stop(str(row["generated_text"]), sampling.stop)
    tokens = list(row["generated_tokens"])
    length = not cut and len(tokens) >= sampling.max_new_tokens and not (tokens and int(tokens[-1]) in eos)
    return {"id": str(row["id"]), "sample_index": int(row["sample_index"]), "response": text,
            "finish_reason": "length" if length else "stop", "n_tokens": len(tokens)}


def run_data_parallel(engine: dict, adapter: str | None, items: list[WorkItem], sampling: SamplingConfig,
                      replicas: int, batch_size: int = 32) -> Iterator[list[dict]]:
    try:
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError:
        raise GenerationError(f"--data-parallel needs Ray Data, which is not installed: {RAY_HINT}") from None

    started_here = not ray.is_initialized()
    if started_here:
        ray.init()  # RAY_ADDRESS if set, else a local cluster for this run
    try:
        config = vLLMEngineProcessorConfig(**processor_config_kwargs(engine, replicas, batch_size))
        lora = {"model": adapter} if adapter else {}  # a row's model != model_source means a LoRA

        def preprocess(row: dict) -> dict:
            params = {**sampling_params_kwargs(sampling, int(row["seed"])), "include_stop_str_in_output": True}
            return {**row, **lora, "sampling_params": params}

        def postprocess(row: dict) -> dict:
            return {k: row[k] for k in ("id", "sample_index", "generated_text", "generated_tokens")}

        processor = build_processor(config, preprocess=preprocess, postprocess=postprocess)
        dataset = ray.data.from_items([{"id": it.id, "sample_index": it.sample_index, "prompt": it.prompt,
                                        "seed": it.seed} for it in items])
        eos, buffer = eos_token_ids(engine["model"]), []
        for row in processor(dataset).iter_rows():
            buffer.append(to_result(row, sampling, eos))
            if len(buffer) >= FLUSH_EVERY:
                yield buffer
                buffer = []
        if buffer:
            yield buffer
    except GenerationError:
        raise
    except Exception as e:  # Ray wraps engine failures in its own exception types
        raise GenerationError(f"data-parallel vLLM generation failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}; finished records are kept: "
                              "rerun to resume") from e
    finally:
        if started_here:
            ray.shutdown()  # stop the local cluster: its engines' memory is freed for the next stage
