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
              "--lr", 1e-3, "--max-length", 64, "--gradient-accumulation-steps", 2,
              "--extra", "logging_first_step=true", "--json")
    assert res.exit_code == 0, res.output
    assert _last_json(res.output)["complete"] is True
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and set(cfg["target_modules"]) == {"q_proj", "v_proj"}
    settings = json.loads((tmp_path / "adapter" / "lineage.json").read_text())["config"]
    assert settings["gradient_accumulation_steps"] == 2 and settings["extra"] == {"logging_first_step": True}
    assert settings["learning_rate"] == 1e-3 and settings["lora"]["lora_alpha"] == 8

    res = cli("merge", "--adapter", tmp_path / "adapter", "--out", tmp_path / "merged", "--json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "merged" / "DONE").exists() and (tmp_path / "merged" / "model.safetensors").exists()

    # the adapter evaluates as --model ADAPTER_DIR, as --model BASE --adapter DIR, and as its merge
    questions = tmp_path / "q.jsonl"
    write_jsonl(questions, [{"id": str(i), "question": f"{i}?", "answer": f"#### {i}"} for i in range(4)])
    scores = []
    for model, extra in ((tmp_path / "adapter", ()), (tiny_model, ("--adapter", tmp_path / "adapter")),
                         (tmp_path / "merged", ())):
        res = cli("eval", "--task", "gsm8k", "--model", model, *extra, "--data", questions, "--n", 0,
                  "--max-new-tokens", 8, "--json")
        assert res.exit_code == 0, res.output
        scores.append({k: v for k, v in _last_json(res.output).items() if k in ("accuracy", "correct", "n_questions")})
    assert scores[0] == scores[1] == scores[2] and scores[0]["n_questions"] == 4

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


@pytest.mark.parametrize("command", ["sft", "dpo", "orpo", "grpo"])
def test_options_are_the_settings(cli, command):
    """Every setting of the command's settings type is an option, with the setting's description
    and default, under its TRL name and its old w2s name; --help shows them."""
    import typer

    from w2s.cli.train import TRAIN_COMMANDS, train_app
    from w2s.training.launch import JOB_KINDS
    from w2s.training.settings import LoraSettings, old_names

    kind, fixed, _, _ = TRAIN_COMMANDS[command]
    settings = JOB_KINDS.get(kind).obj.settings
    options = {opt: p for p in typer.main.get_command(train_app).commands[command].params for opt in p.opts}
    expected = [(n, i) for n, i in settings.model_fields.items() if n not in fixed and n != "lora"]
    expected += [(n if n.startswith("lora_") else f"lora_{n}", i) for n, i in LoraSettings.model_fields.items()]
    for name, info in expected:
        option = options.get("--" + name.replace("_", "-"))
        assert option is not None, f"no option for {name}"
        assert info.description in option.help
        if name != "extra":
            assert option.default == (",".join(info.default) if isinstance(info.default, tuple) else info.default)
        for old in old_names(info):
            assert options[f"--{old.replace('_', '-')}" if name == old or not name.startswith("lora_")
                           else f"--lora-{old}"] is option
    assert "method" not in options and "--lora" in options
    res = cli("train", command, "--help")
    assert res.exit_code == 0 and "--per-device-train-batch-size" in res.output and "--batch-size" in res.output
