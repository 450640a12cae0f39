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
    job = {"kind": "sft", "model": "m", "data": "d", "out_dir": str(tmp_path / "o"), "settings": {"lr": 1}}
    with pytest.raises(TypeError):
        launch_job("python", job, tmp_path / "job.json")
    assert not (tmp_path / "job.json").exists()
