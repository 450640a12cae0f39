"""vLLM's per-sample `SamplingParams` arguments, shared by the single-engine backend (`vllm`)
and the data-parallel one (`ray_dp`); its own module so that neither imports the other for it."""

from __future__ import annotations

from w2s.generation.sampling import SamplingConfig


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
