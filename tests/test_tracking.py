"""The run in the tracker: a tiny pipeline run with `tracking.backend: tensorboard` leaves event
files under RUN/tracking/ that hold the method's numbers (per-model accuracy, the selection's
precision), read back with TensorBoard's own reader; wandb in offline mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from w2s import tracking
from w2s.demo import DEMO_WORLD, demo_config
from w2s.pipeline import run_pipeline
from w2s.pipeline.config import config_from_dict, deep_merge
from w2s.toy.data import write_splits
from w2s.toy.world import WorldConfig


def tiny_toy_config(tmp_path: Path, **tracking_section) -> dict:
    data = tmp_path / "toy_data"
    write_splits(data, 0, {"train_1": 200, "train_2": 32, "test": 16, "dev": 16}, WorldConfig(**DEMO_WORLD))
    return deep_merge(demo_config(data, quick=True), {
        "weak": {"train": {"max_steps": 150}}, "strong": {"train": {"max_steps": 2}},
        "stage1": {"iterations": 1, "variants": ["icl"]}, "stage2": {"enabled": False},
        "baselines": ["weak"], "eval": {"n": 0}, "tracking": tracking_section})


def read_scalars(log_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_the_methods_numbers(tmp_path):
    run = tmp_path / "run"
    run_pipeline(config_from_dict(tiny_toy_config(tmp_path, backend="tensorboard")), run, quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    logged = read_scalars(run / "tracking" / "tensorboard" / "pipeline")
    for name, m in metrics["models"].items():
        assert logged[f"model/{name}/accuracy"] == pytest.approx(m["accuracy"])
        assert logged[f"model/{name}/ci_low"] == pytest.approx(m["ci95"][0])
    selection = json.loads((run / "data/iter1/summary.json").read_text())
    assert logged["select_iter1/precision"] == pytest.approx(selection["precision"])
    assert logged["select_iter1/coverage"] == pytest.approx(selection["coverage"])
    assert logged["load_data/n_unlabeled"] == 32
    # the trainers logged beside the pipeline, under the run's directory (TRL's loss curve)
    trainer = read_scalars(next((run / "tracking" / "tensorboard" / "weak_sft").rglob("events.out.tfevents.*")).parent)
    assert any(tag.endswith("loss") for tag in trainer), sorted(trainer)


def _offline_log_holding(root: Path, needles, timeout: float) -> bytes:
    """The offline run's log once it holds every needle, or as it is after `timeout` seconds."""
    deadline, log = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        files = list(root.glob("wandb/offline-run-*/run-*.wandb"))
        log = files[0].read_bytes() if files else b""
        if all(n in log for n in needles):
            break
        time.sleep(0.5)
    return log


def test_wandb_offline_run_carries_name_group_and_numbers(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

    class Section:
        backend, project, run_name, group = "wandb", "w2s-test", "exp1", "sweepA"

    tracker = tracking.open_tracker(Section, tmp_path)
    tracker.log(tracking.scalars("select_iter1", {"precision": 0.75, "n_selected": 3, "ids": ["a"]}), 0)
    tracking.log_metrics(tracker, {"models": {"m_plus": {"accuracy": 0.5, "ci95": [0.4, 0.6]}}}, 1)
    run = tracker.run
    assert (run.name, run.group, run.project) == ("exp1", "sweepA", "w2s-test")
    tracker.close()
    # the offline run's transaction log (protobuf records; wandb 0.31 ships no reader for it), written
    # by wandb's service process, which may still be flushing it when close() returns on a loaded machine
    needles = (b"select_iter1/precision", b"0.75", b"model/m_plus/accuracy", b"sweepA", b"exp1")
    log = _offline_log_holding(tmp_path, needles, timeout=60.0)
    for text in needles:
        assert text in log, text
    assert b"select_iter1/ids" not in log  # text and lists are not scalars
    assert wandb.run is None


def test_trainers_log_under_the_runs_name():
    class Section:
        backend, project, run_name, group = "tensorboard", None, "exp1", None

    settings = tracking.trainer_settings(Section, Path("/runs/x"), None, "sft_iter1_icl")
    assert settings == {"report_to": "tensorboard", "extra": {"run_name": "exp1/sft_iter1_icl"},
                        "logging_dir": "/runs/x/tracking/tensorboard/sft_iter1_icl"}
    Section.backend = "none"
    assert tracking.trainer_settings(Section, Path("/runs/x"), None, "weak_sft") == {}
