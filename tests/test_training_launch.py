"""Training jobs under a launcher (how the pipeline runs multi-GPU training stages)."""

import json

import pytest

from w2s.training import is_complete, read_lineage
from w2s.training.launch import launch_job


def test_job_runs_under_a_launcher_subprocess(tiny_model, tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": f"Question: {i} + 1?\nAnswer:",
                                        "completion": f" {i} + 1 = {i + 1}\n#### {i + 1}"}) + "\n"
                            for i in range(8)))
    job = {"kind": "sft", "model": str(tiny_model), "data": str(data), "out_dir": str(tmp_path / "out"),
           "settings": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "seed": 3,
                        "lora": {"r": 4, "alpha": 8}}}
    launch_job("python", job, tmp_path / "job.json")
    assert is_complete(tmp_path / "out")
    lineage = read_lineage(tmp_path / "out")
    assert lineage["config"]["seed"] == 3 and lineage["config"]["lora"]["r"] == 4


def test_bad_setting_fails_before_launching(tmp_path):
    job = {"kind": "sft", "model": "m", "data": "d", "out_dir": str(tmp_path / "o"), "settings": {"lr_rate": 1}}
    with pytest.raises(ValueError, match=r"settings\.lr_rate: unknown key"):
        launch_job("python", job, tmp_path / "job.json")
    with pytest.raises(ValueError, match=r"kind: unknown training job kind 'dpo' .*known: grpo, preference, sft"):
        launch_job("python", {**job, "kind": "dpo", "settings": {}}, tmp_path / "job.json")
    assert not (tmp_path / "job.json").exists()


def test_a_job_kind_from_another_package(tmp_path, monkeypatch):
    """A kind named "package.module:OBJECT" runs that JobKind's trainer with its own settings type."""
    import sys
    import types

    from w2s.training.launch import JobKind, run_job
    from w2s.training.settings import TrainSettings

    seen = {}
    module = types.ModuleType("my_trainers")
    module.KIND = JobKind(TrainSettings, lambda model, data, out, settings: seen.update(settings=settings) or out)
    monkeypatch.setitem(sys.modules, "my_trainers", module)
    job = {"kind": "my_trainers:KIND", "model": "m", "data": "d", "out_dir": "o", "settings": {"epochs": 3}}
    assert run_job(job) == "o" and seen["settings"].num_train_epochs == 3
