"""The vllm backend without vLLM: the import guard and the pure argument mapping."""

from __future__ import annotations

import importlib.util
import json

import pytest

from w2s.generation import GenerationError, SamplingConfig, generate
from w2s.generation import vllm as vllm_backend


def test_missing_vllm_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(GenerationError, match=r"pip install 'w2s-reasoning\[vllm\]'"):
        generate("any/model", [{"id": "a", "prompt": "x"}], SamplingConfig(max_new_tokens=4), backend="vllm",
                 progress=False)


def test_package_imports_without_vllm():
    import w2s.generation  # noqa: F401  (never imports vllm at module level)

    assert "vllm" not in __import__("sys").modules or importlib.util.find_spec("vllm") is not None


def test_sampling_params_mapping():
    greedy = vllm_backend.sampling_params_kwargs(SamplingConfig(max_new_tokens=64, stop=("\nQuestion:",)), 11)
    assert greedy == {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": 64,
                      "stop": ["\nQuestion:"], "include_stop_str_in_output": False,
                      "skip_special_tokens": True, "seed": 11}
    sampled = vllm_backend.sampling_params_kwargs(
        SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, top_k=20, n=10), 5)
    assert (sampled["n"], sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (1, 1.0, 0.9, 20)
    assert vllm_backend.sampling_params_kwargs(SamplingConfig(max_new_tokens=8, temperature=1.0), 5)["top_k"] == -1


def test_engine_mapping_with_lora_and_tensor_parallel(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 48}))
    kwargs = vllm_backend.engine_kwargs("org/model", adapter=str(tmp_path), tensor_parallel_size=2,
                                        dtype="bfloat16", max_model_len=4096)
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["enable_lora"] is True
    assert kwargs["max_lora_rank"] == 64 and kwargs["max_model_len"] == 4096 and kwargs["dtype"] == "bfloat16"
    assert "enable_lora" not in vllm_backend.engine_kwargs("org/model")


def test_finish_reason_mapping():
    assert vllm_backend.finish_reason("length", False) == "length"
    assert vllm_backend.finish_reason("length", True) == "stop"
    assert vllm_backend.finish_reason("stop", False) == "stop"
