"""`w2s plan`: what a run writes, holds in memory and computes, before it starts; `w2s run` refuses a
run its disk cannot hold, writing nothing. The disk estimates are checked against what a real
tiny run writes; token counts are upper bounds of what it generates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def tiny_lora_config(tmp_path: Path, shared: Path) -> Path:
    gsm = shared / "gsm8k"
    spec = "tiny:layers=2,hidden=32,heads=2,vocab=300,steps=0"
    train = {"learning_rate": 1.0e-3, "max_steps": 1, "batch_size": 4, "max_length": 128}
    cfg = {"task": "gsm8k", "seed": 0, "threads": 1,
           "data": {"gold": str(gsm / "train_1.jsonl"), "unlabeled": str(gsm / "train_2.jsonl"),
                    "test": str(gsm / "test.jsonl"), "limit_gold": 16, "limit_unlabeled": 12, "limit_test": 4},
           "weak": {"model": spec, "train": train},
           "strong": {"model": spec + ",seed=1", "train": train, "lora": {"r": 4, "alpha": 8}},
           "generation": {"max_new_tokens": 16},
           "stage1": {"iterations": 1, "shots": 1, "variants": ["hybrid"]},
           "stage2": {"samples": 4, "method": "dpo", "min_confidence": 0.0, "flip_confidence": 0.0,
                      "train": {"max_steps": 1, "batch_size": 2, "max_length": 128}},
           "baselines": ["weak", "full_weak"], "eval": {"n": 1}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_run_its_disk_cannot_hold_is_refused_before_anything_is_written(cli, tmp_path, shared_data, monkeypatch):
    config = tiny_lora_config(tmp_path, shared_data)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    run = tmp_path / "runs" / "tiny"
    res = cli("run", config, "--out", run)
    assert res.exit_code == 2, res.output
    assert "the plan needs" in res.output and "has 1.0 kB free" in res.output and "--no-disk-check" in res.output
    assert not run.exists() and not run.parent.exists()   # no run directory, no lock, no config.yaml


def test_the_plan_matches_what_a_tiny_lora_run_writes(tmp_path, shared_data):
    """Every trained model's bytes within 1 % of its safetensors on disk (adapters: LoRA
    parameters in fp32; the weak model in full); generated tokens never above the plan's."""
    from w2s.pipeline import prepare, run_pipeline, run_plan

    config, run = tiny_lora_config(tmp_path, shared_data), tmp_path / "run"
    cfg, run_dir, stages, _ = prepare(config, run)
    plan = run_plan(cfg, run_dir, stages, config)
    run_pipeline(config, run, quiet=True)
    trained = {s.stage: s for s in plan.stages if s.kind == "train" and s.model_bytes}  # not the tiny bases
    assert {"weak_sft", "sft_iter1_hybrid", "m_pro_dpo", "full_weak"} <= set(trained)
    for name, s in trained.items():
        model = run / "models" / name
        actual = sum(f.stat().st_size for f in model.glob("*.safetensors"))
        assert (model / "adapter_model.safetensors").exists() == (name != "weak_sft")
        assert abs(actual - s.model_bytes) <= 0.01 * actual + 4096, (name, actual, s.model_bytes)
    by_stage = {s.name: s for s in stages}
    for s in plan.stages:
        if s.kind in ("generate", "eval"):
            out = run / by_stage[s.stage].outputs[0]   # a generation file, or eval/NAME.json beside its own
            files = [out] if out.suffix == ".jsonl" else [out.with_suffix(f".{k}.jsonl") for k in ("greedy", "samples")]
            produced = [json.loads(line) for f in files if f.exists() for line in f.open()]
            assert produced and sum(r["n_tokens"] for r in produced) <= s.generated_tokens, s.stage
    assert plan.disk >= sum(t.model_bytes for t in trained.values())
    # the report's timings: each computing stage's arithmetic at the machine's rate measured at the start
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["machine"]["flops_per_s"] > 1e8 and metrics["machine"]["dtype"] == "float32"
    row = metrics["arithmetic"]["weak_sft"]
    assert row["flops"] == next(s.flops for s in plan.stages if s.stage == "weak_sft") > 0
    assert row["share_of_machine_rate"] == pytest.approx(row["arithmetic_seconds"] / metrics["timings"]["weak_sft"],
                                                         rel=1e-2)
    assert "| Stage | Seconds | Arithmetic (s) | Share of machine rate |" in (run / "report.md").read_text()
    assert 'alt="timing chart"' in (run / "report.html").read_text()
    # a resumed run plans only what is left
    assert run_plan(cfg, run_dir, stages, config).disk == 0


def test_plan_of_the_70b_example_adapters_against_merged_copies(cli, shared_data):
    gsm = shared_data / "gsm8k"
    data = [f"--set=data.{k}={gsm / f}" for k, f in
            (("gold", "train_1.jsonl"), ("unlabeled", "train_2.jsonl"), ("test", "test.jsonl"))]
    res = cli("plan", ROOT / "examples" / "gsm8k_llama3.yaml", *data, "--json")
    assert res.exit_code == 0, res.output
    adapters = json.loads(res.output)
    merged = json.loads(cli("plan", ROOT / "examples" / "gsm8k_llama3.yaml", *data, "--json",
                            "--set", "strong.train.merge=true", "--set", "stage2.train.merge=true").output)
    stages = {s["stage"]: s for s in adapters["stages"]}
    # a LoRA r=64 adapter of Llama-3-70B (q,k,v,o,gate,up,down; 80 layers) in fp32: 3.3 GB; the 70B in bf16: 141 GB
    assert 3.2e9 < stages["sft_iter1_hybrid"]["model_bytes"] < 3.4e9
    assert 140e9 < {s["stage"]: s for s in merged["stages"]}["sft_iter1_hybrid"]["model_bytes"] < 142e9
    assert 100e9 < adapters["disk"] < 200e9 and merged["disk"] > 10 * adapters["disk"]
    assert adapters["devices"] == {"train_processes": 8, "sharding": "fsdp", "tensor_parallel": 4, "data_parallel": 1}
    # FSDP over 8 GPUs: the 70B's bf16 weights are ~18 GB a GPU; the plan fits 80 GB GPUs
    assert 17e9 < stages["sft_iter1_hybrid"]["train_peak"] < 80e9
    assert stages["samples"]["generated_tokens"] == 7000 * 10 * 512
    table = cli("plan", ROOT / "examples" / "gsm8k_llama3.yaml", *data)
    assert table.exit_code == 0 and "plan: 130." in table.output and "free where the run directory goes" in table.output


def test_the_eta_counts_the_work_left_not_the_stages_left():
    """After a 1 s training stage of 1 GFLOP, a 10 GFLOP training stage ahead is ~10 s (the
    measured rate), not 'the average stage'; a kind not yet measured gets the mean stage time."""
    from w2s.pipeline import ProgressPrinter
    from w2s.pipeline.dag import Stage
    from w2s.plan import Devices, Plan, StagePlan

    stages = [Stage("a", None, kind="train"), Stage("b", None, kind="train"), Stage("c", None, kind="eval")]
    plan = Plan([StagePlan("a", "train", flops=1e9), StagePlan("b", "train", flops=1e10),
                 StagePlan("c", "eval", flops=1e9)], Devices(), {}, {}, [])
    progress = ProgressPrinter(stages, quiet=True, plan=plan)
    progress("done", stages[0], {"index": 0, "seconds": 1.0})
    assert progress.eta() == pytest.approx(10.0 + 1.0)
    progress("done", stages[1], {"index": 1, "seconds": 12.0})
    assert progress.eta() == pytest.approx(13.0 / 2)   # eval: not measured yet, the mean stage


def test_the_eta_counts_side_by_side_stages_at_their_share_of_the_machine():
    """Two evals that ran side by side for 10 s each had half the machine each: 1 GFLOP per 5 s,
    so a 2 GFLOP eval ahead is ~10 s (not 20)."""
    from w2s.pipeline import ProgressPrinter
    from w2s.pipeline.dag import Stage
    from w2s.plan import Devices, Plan, StagePlan

    stages = [Stage(n, None, kind="eval") for n in ("a", "b", "c")]
    plan = Plan([StagePlan("a", "eval", flops=1e9), StagePlan("b", "eval", flops=1e9),
                 StagePlan("c", "eval", flops=2e9)], Devices(), {}, {}, [])
    progress = ProgressPrinter(stages, quiet=True, plan=plan)
    progress("start", stages[0], {"index": 0})
    progress("start", stages[1], {"index": 1})
    progress("done", stages[0], {"index": 0, "seconds": 10.0})
    progress("done", stages[1], {"index": 1, "seconds": 10.0})
    assert progress.eta() == pytest.approx(10.0)
