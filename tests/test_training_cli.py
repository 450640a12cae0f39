"""`w2s train sft|dpo|orpo` and `w2s merge` through the real CLI (typer), on a tiny model."""

from __future__ import annotations

import json

import pytest

from w2s.io import write_jsonl


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    runner = CliRunner()

    def invoke(*args):
        res = runner.invoke(app, [str(a) for a in args])
        return res

    return invoke


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_cli_sft_lora_merge_and_orpo(cli, tiny_model, tmp_path):
    sft = tmp_path / "sft.jsonl"
    write_jsonl(sft, [{"id": str(i), "prompt": f"Question: {i}?\nAnswer:", "completion": f" {i}"} for i in range(8)])
    res = cli("train", "sft", "--model", tiny_model, "--data", sft, "--out", tmp_path / "adapter", "--lora",
              "--lora-r", 4, "--lora-alpha", 8, "--lora-targets", "q,v", "--no-merge", "--max-steps", 2,
              "--lr", 1e-3, "--max-length", 64, "--json")
    assert res.exit_code == 0, res.output
    assert _last_json(res.output)["complete"] is True
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and set(cfg["target_modules"]) == {"q_proj", "v_proj"}

    res = cli("merge", "--adapter", tmp_path / "adapter", "--out", tmp_path / "merged", "--json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "merged" / "DONE").exists() and (tmp_path / "merged" / "model.safetensors").exists()

    prefs = tmp_path / "p.jsonl"
    write_jsonl(prefs, [{"id": str(i), "prompt": f"Question: {i}?\nAnswer:", "chosen": f" {i}",
                         "rejected": f" {i + 1}"} for i in range(4)])
    for method in ("orpo", "dpo"):
        res = cli("train", method, "--model", tmp_path / "merged", "--data", prefs, "--out", tmp_path / method,
                  "--beta", 0.2, "--sft-weight", 0.1, "--max-steps", 1, "--batch-size", 2, "--json")
        assert res.exit_code == 0, res.output
        summary = _last_json(res.output)
        assert summary["kind"] == method and summary["global_step"] == 1
    lineage = json.loads((tmp_path / "dpo" / "lineage.json").read_text())
    assert lineage["config"]["beta"] == 0.2 and lineage["reference"]["model"] == str((tmp_path / "merged").resolve())


def test_cli_bad_data_is_a_one_line_error(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "p", "completion": " c"}\n{"id": "2", "prompt": "p", "chosen": 1}\n')
    res = cli("train", "sft", "--model", tmp_path / "missing-model", "--data", bad, "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert "row 2" in res.output and "completion" in res.output and "Traceback" not in res.output
