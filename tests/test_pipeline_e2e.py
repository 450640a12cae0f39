"""End to end on CPU: tiny locally built models, a slice of GSM8K, every stage and baseline.

Then the same run killed at a random point inside a generation stage and inside a training
stage, rerun to completion: finished work is reused and the final artifacts equal those of
the uninterrupted run. Then a changed Stage II threshold reruns only what follows from it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_MODELS = {"weak", "strong_fewshot", "full_weak", "gold_sft", "m_plus", "m_pro_dpo", "m_pro_orpo"} | {
    f"stage1_iter{i}_{v}" for i in (1, 2) for v in ("weak", "icl", "hybrid")}
COMPARED_FILES = ["data/d_weak.jsonl", "data/d_icl.jsonl", "data/iter1/hybrid.jsonl", "data/iter2/hybrid.jsonl",
                  "data/samples.jsonl", "data/pairs.jsonl", "eval/m_pro_dpo.json", "eval/stage1_iter2_hybrid.json",
                  "eval/gold_sft.json"]


def build_bases(tmp: Path, gold_path: str) -> tuple[str, str]:
    """Tiny weak/strong base models, built once and shared by every run in this module."""
    import torch

    from w2s.tasks import get_task
    from w2s.tiny_models import build_from_spec

    torch.set_num_threads(1)  # tiny models: one thread is fastest, and immune to a busy machine
    task = get_task("gsm8k")
    texts = [task.prompt(r["question"]) + task.completion(r["solution"]) for r in task.load_questions(gold_path)[:120]]
    weak = build_from_spec("tiny:layers=2,hidden=48,vocab=1024,steps=300,batch=8,seq_len=128,seed=0", tmp / "base_weak", texts)
    strong = build_from_spec("tiny:layers=2,hidden=64,vocab=1024,steps=300,batch=8,seq_len=128,seed=1", tmp / "base_strong", texts)
    return str(weak), str(strong)


def small_config(tmp: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "examples" / "tiny_cpu.yaml").read_text())
    for k in ("gold", "unlabeled", "test"):  # the example's split, from the copy beside the checkout
        cfg["data"][k] = str(ROOT.parent / "shared" / "data" / "gsm8k" / Path(cfg["data"][k]).name)
    cfg["data"].update(limit_gold=120, limit_unlabeled=48, limit_test=12)
    cfg["weak"]["model"], cfg["strong"]["model"] = build_bases(tmp, cfg["data"]["gold"])
    cfg["weak"]["train"].update(max_steps=30, save_steps=10)
    cfg["strong"]["train"].update(max_steps=8, save_steps=3)
    # Loose Stage II thresholds so that even tiny models yield pairs for DPO and ORPO to train on.
    cfg["stage2"].update(samples=4, temperature=1.0, min_confidence=0.25, flip_confidence=0.25)
    cfg["stage2"]["train"].update(max_steps=4, save_steps=2)
    cfg["generation"]["max_new_tokens"] = 96
    cfg["generation"]["options"] = {"batch_size": 8}
    cfg["eval"]["n"] = 2
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def w2s(*args, **kw):
    return subprocess.run([sys.executable, "-m", "w2s", *map(str, args)], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = small_config(tmp)
    proc = w2s("run", cfg, "--out", tmp / "A")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return cfg, tmp / "A", proc.stdout


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_every_stage_runs_and_the_report_renders(reference_run):
    _, run, stdout = reference_run
    m = manifest(run)
    assert all(e["status"] == "done" for e in m["stages"].values())
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["models"]) == EXPECTED_MODELS
    for name, row in metrics["models"].items():
        assert 0.0 <= row["accuracy"] <= 1.0, name
        assert 0.0 <= row["pass@k"] <= 1.0 and 0.0 <= row["maj@k"] <= 1.0
    assert metrics["models"]["m_plus"] == metrics["models"]["stage1_iter2_hybrid"]
    assert len(metrics["selection"]["iterations"]) == 2
    assert "n_pairs" in metrics["selection"]["pairs"]
    for d in ("weak_sft", "sft_iter1_hybrid", "sft_iter2_hybrid", "m_pro_dpo", "m_pro_orpo", "gold_sft",
              "full_weak"):
        assert (run / "models" / d / "DONE").exists(), d
        assert (run / "models" / d / "lineage.json").exists(), d
    html = (run / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert "Gold SFT (ceiling)" in (run / "report.md").read_text()
    assert "M_pro DPO" in stdout  # the results table is printed
    status = w2s("status", run, "--json")
    assert status.returncode == 0
    assert {r["status"] for r in json.loads(status.stdout)} == {"done"}


def _kill_when(cmd, predicate, run_dir: Path, rng: random.Random, timeout=600):
    proc = subprocess.Popen([sys.executable, "-m", "w2s", *map(str, cmd)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if proc.poll() is not None:
                raise AssertionError(f"run ended before the kill point: {proc.stderr.read()[-3000:]}")
            if (run_dir / "manifest.json").exists():
                try:
                    m = manifest(run_dir)
                except json.JSONDecodeError:
                    m = None
                if m and predicate(m, run_dir):
                    time.sleep(rng.uniform(0.0, 0.5))  # a random point inside the stage
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return
            time.sleep(0.05)
        raise AssertionError("kill point never reached")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _running(stage):
    def pred(m, run_dir):
        e = m["stages"].get(stage, {})
        if e.get("status") != "running":
            return False
        work = list((run_dir / "work").glob(f"{stage}-*")) if (run_dir / "work").exists() else []
        # training checkpoints live in the staging directory beside the model (w2s.training.outdir)
        ckpts = list((run_dir / "models").glob(f".{stage}.w2s-*/checkpoints/*"))
        # wait until partial work exists, so the rerun has something to resume from
        return any(p.stat().st_size > 0 for p in work if p.is_file()) or bool(ckpts)
    return pred


def test_killed_runs_resume_to_identical_artifacts(reference_run, tmp_path):
    cfg, ref, _ = reference_run
    run = tmp_path / "B"
    rng = random.Random(1234)
    _kill_when(["run", cfg, "--out", run], _running("icl_answers"), run, rng)          # generation stage
    m = manifest(run)
    assert m["stages"]["weak_answers"]["status"] == "done"
    assert m["stages"]["icl_answers"]["status"] == "running"
    _kill_when(["run", cfg, "--out", run], _running("sft_iter1_hybrid"), run, rng)     # training stage
    m = manifest(run)
    assert m["stages"]["icl_answers"]["resumed"] is True
    assert m["stages"]["sft_iter1_hybrid"]["status"] == "running"
    proc = w2s("run", cfg, "--out", run)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = manifest(run)
    assert m["stages"]["sft_iter1_hybrid"]["resumed"] is True
    last = m["invocations"][-1]
    assert "weak_answers" in last["cached"] and "icl_answers" in last["cached"]  # finished work reused
    assert "weak_answers" not in last["ran"]
    for rel in COMPARED_FILES:  # models are named relative to the run: the files are the same
        assert _without_timings(ref / rel) == _without_timings(run / rel), rel


def _without_timings(path: Path):
    """File content without the wall-clock `seconds` an eval file records."""
    text = path.read_text()
    rows = [json.loads(text)] if path.suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    for r in rows:
        r.pop("seconds", None)
    return rows


def test_changed_threshold_reruns_only_stage2_downstream(reference_run, tmp_path):
    import shutil

    cfg, ref, _ = reference_run
    run = tmp_path / "C"
    shutil.copytree(ref, run)
    proc = w2s("run", cfg, "--out", run, "--set", "stage2.flip_confidence=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = manifest(run)["invocations"][-1]
    allowed = {"pairs", "m_pro_dpo", "m_pro_orpo", "eval_m_pro_dpo", "eval_m_pro_orpo", "report"}
    assert "pairs" in last["ran"]
    assert set(last["ran"]) <= allowed, last["ran"]
    assert "samples" in last["cached"] and "sft_iter2_hybrid" in last["cached"]


def test_cli_select_and_pairs_equal_the_pipeline_stages(reference_run, tmp_path):
    """`w2s select` / `w2s pairs` on the run's files call the same steps as the stages: same
    records, same summaries (the CLI reads gold from --questions, the pipeline from hidden gold)."""
    from w2s.io import read_jsonl, write_jsonl

    _, run_dir, _ = reference_run
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    # records name run-internal models relative to the run directory: a run's files do not
    # depend on where it lives
    assert {r["model"] for r in read_jsonl(run_dir / "data/d_weak.jsonl")} == {"models/weak_sft"}
    assert json.loads((run_dir / "eval/gold_sft.json").read_text())["model"] == "models/gold_sft"
    hidden = {r["id"]: r for r in read_jsonl(run_dir / "data/questions/hidden_gold.jsonl")}
    questions = tmp_path / "q.jsonl"
    write_jsonl(questions, [{**q, "answer": hidden[q["id"]]["answer"]}
                            for q in read_jsonl(run_dir / "data/questions/unlabeled.jsonl")])
    proc = w2s("select", "--task", "gsm8k", "--weak", run_dir / "data/d_weak.jsonl", "--icl",
               run_dir / "data/d_icl.jsonl", "--questions", questions, "--out", tmp_path / "sel")
    assert proc.returncode == 0, proc.stderr
    for v in ("weak", "icl", "hybrid"):
        assert (tmp_path / "sel" / f"{v}.jsonl").read_bytes() == (run_dir / f"data/iter1/{v}.jsonl").read_bytes()
    stage_summary = json.loads((run_dir / "data/iter1/summary.json").read_text())
    assert {"iteration": 1, **json.loads((tmp_path / "sel" / "summary.json").read_text())} == stage_summary

    s2 = cfg["stage2"]
    proc = w2s("pairs", "--task", "gsm8k", "--weak", run_dir / "data/d_weak.jsonl", "--samples",
               run_dir / "data/samples.jsonl", "--questions", questions, "--out", tmp_path / "pairs.jsonl",
               "--min-confidence", s2["min_confidence"], "--flip-confidence", s2["flip_confidence"],
               "--max-pairs", s2["max_pairs"], "--seed", cfg["seed"],
               "--stage1", run_dir / f"data/iter{cfg['stage1']['iterations']}/hybrid.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pairs.jsonl").read_bytes() == (run_dir / "data/pairs.jsonl").read_bytes()
    assert (json.loads((tmp_path / "pairs_summary.json").read_text())
            == json.loads((run_dir / "data/pairs_summary.json").read_text()))
