"""`hub: {push: true, prefix}`: every trained model of a run (once) and its datasets, with a card
stating lineage and metrics; huggingface_hub's upload calls recorded by a stand-in (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from w2s import hub
from w2s.pipeline.config import ConfigError, config_from_dict
from w2s.pipeline.parts import build
from w2s.report import ModelRef


class RecordingApi:
    """huggingface_hub.HfApi's upload surface, recording instead of sending."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, **kw):
        self.calls.append(("upload_file", repo_id, {"path_in_repo": path_in_repo, "content": path_or_fileobj.decode()}))

    def upload_folder(self, *, folder_path, repo_id, **kw):
        self.calls.append(("upload_folder", repo_id, {"folder_path": folder_path, **kw}))


def fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for stage, done in (("sft_iter1_icl", True), ("m_pro_dpo", True), ("gold_sft", False)):
        d = run / "models" / stage
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights")
        (d / "lineage.json").write_text(json.dumps({
            "kind": "dpo" if stage == "m_pro_dpo" else "sft", "adapter": stage == "m_pro_dpo",
            "base_model": {"path": "models/sft_iter1_icl" if stage == "m_pro_dpo" else "meta-llama/Meta-Llama-3-8B"},
            "reference": {"model": "models/sft_iter1_icl"} if stage == "m_pro_dpo" else None,
            "data": {"n_records": 12, "sha256": "abc"}, "config": {"learning_rate": 1e-5}}))
        if done:
            (d / "DONE").write_text("x")
    (run / "data").mkdir()
    (run / "data" / "d_weak.jsonl").write_text("{}\n")
    (run / "metrics.json").write_text(json.dumps({
        "run": {"name": "exp1"}, "aliases": {"m_plus": "stage1_iter1_icl"},
        "models": {"m_plus": {"accuracy": 0.7, "ci95": [0.6, 0.8], "pgr": 0.5},
                   "stage1_iter1_icl": {"accuracy": 0.7}, "m_pro_dpo": {"accuracy": 0.72, "ci95": [0.62, 0.81]}}}))
    return run


def test_push_sends_each_trained_model_once_with_its_card_and_the_data(tmp_path):
    run = fake_run(tmp_path)
    models = {"stage1_iter1_icl": ModelRef("sft_iter1_icl", "stage1_iter1_icl"),
              "m_plus": ModelRef("sft_iter1_icl", "stage1_iter1_icl"), "m_pro_dpo": ModelRef("m_pro_dpo", "m_pro_dpo"),
              "gold_sft": ModelRef("gold_sft", "gold_sft"), "strong_fewshot": ModelRef(None, "strong_fewshot")}
    api = RecordingApi()
    pushed = hub.push_run(run, models, "org/exp", private=True, api=api)
    # M_plus under its own name (its Stage I row is the same folder); unfinished and base models never
    assert set(pushed) == {"org/exp-m-plus", "org/exp-m-pro-dpo", "org/exp-data"}
    cards = {repo: kw["content"] for name, repo, kw in api.calls if name == "upload_file"}
    assert "accuracy: 0.72 (95% CI 0.62 to 0.81)" in cards["org/exp-m-pro-dpo"]
    assert "a LoRA adapter over it" in cards["org/exp-m-pro-dpo"] and "reference model: `models/sft_iter1_icl`" in cards["org/exp-m-pro-dpo"]
    assert "pgr: 0.5" in cards["org/exp-m-plus"] and "meta-llama/Meta-Llama-3-8B" in cards["org/exp-m-plus"]
    folders = {repo: kw for name, repo, kw in api.calls if name == "upload_folder"}
    assert "checkpoints/*" in folders["org/exp-m-pro-dpo"]["ignore_patterns"]
    assert folders["org/exp-data"]["repo_type"] == "dataset" and "data/d_weak.jsonl" in folders["org/exp-data"]["allow_patterns"]
    assert all(kw.get("private") for name, _, kw in api.calls if name == "create_repo")


def test_the_pipeline_pushes_after_the_report_and_needs_a_prefix(tmp_path):
    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1", "solution": "#### 1"}\n')
    raw = {"task": "gsm8k", "data": {k: str(tmp_path / f"{f}.jsonl") for k, f in
                                     (("gold", "gold"), ("unlabeled", "unl"), ("test", "test"))},
           "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}
    stages, _ = build(config_from_dict({**raw, "hub": {"push": True, "prefix": "org/exp"}}), tmp_path / "run")
    assert stages[-1].name == "hub_push" and stages[-1].deps == ["report"]
    assert "hub_push" not in {s.name for s in build(config_from_dict(raw), tmp_path / "run")[0]}
    with pytest.raises(ConfigError, match="hub.prefix: must be ORG/NAME"):
        config_from_dict({**raw, "hub": {"push": True}})
