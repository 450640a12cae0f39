"""Config validation: errors name the key or file, and come fast."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from w2s.pipeline.config import ConfigError, config_from_dict, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    return tmp_path


def base(files):
    return {"task": "gsm8k",
            "data": {"gold": str(files / "gold.jsonl"), "unlabeled": str(files / "unl.jsonl"),
                     "test": str(files / "test.jsonl")},
            "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}


def test_minimal_config_gets_paper_defaults(files):
    cfg = config_from_dict(base(files))
    assert cfg.stage2.samples == 10 and cfg.stage2.temperature == 1.0
    assert (cfg.stage2.min_confidence, cfg.stage2.flip_confidence) == (0.6, 0.8)
    assert cfg.baselines == ["weak", "strong_fewshot", "full_weak", "gold_sft"]


@pytest.mark.parametrize("patch, message", [
    ({"stage2": {"samplez": 3}}, "stage2.samplez: unknown key"),
    ({"stage2": {"samples": "ten"}}, "stage2.samples: expected an integer"),
    ({"stage2": {"method": "ppo"}}, "stage2.method: expected one of"),
    ({"stage1": {"variants": ["weak", "gold"]}}, "stage1.variants[1]: expected one of 'weak', 'icl' or 'hybrid', got 'gold'"),
    ({"data": {"test": "/nonexistent/test.jsonl"}}, "data.test: file not found: /nonexistent/test.jsonl"),
    ({"baselines": ["weak", "oracle"]}, "baselines[1]: expected one of 'weak', 'strong_fewshot', 'full_weak' or 'gold_sft', got 'oracle'"),
    ({"weak": {"model": "tiny:layerz=2"}}, "weak.model: tiny spec"),
    ({"strong": {"model": "./no/such/dir"}}, "strong.model: model directory not found"),
    ({"strong": {"train": {"learning_rat": 1.0}}}, "strong.train.learning_rat: unknown key"),
    ({"eval": {"n": True}}, "eval.n: expected an integer"),
    ({"strong": {"train": {"learning_rate": "fast"}}}, "strong.train.learning_rate: expected a number"),
    ({"strong": {"train": {"max_steps": 1.5}}}, "strong.train.max_steps: expected an integer"),
    ({"stage2": {"train": {"beta": -1}}}, "stage2.train.beta: must be > 0"),
])
def test_errors_name_the_key(files, patch, message):
    raw = base(files)
    for section, values in patch.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict(raw)


def test_missing_required_key(files):
    raw = base(files)
    del raw["strong"]
    with pytest.raises(ConfigError, match="strong: required key is missing"):
        config_from_dict(raw)


def test_relative_paths_resolve_against_the_config_file(files):
    raw = base(files)
    raw["data"] = {"gold": "gold.jsonl", "unlabeled": "unl.jsonl", "test": "test.jsonl"}
    (files / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(files / "run.yaml")
    assert cfg.data.gold == str((files / "gold.jsonl").resolve())


def test_overrides(files):
    assert parse_override("stage2.min_confidence=0.7") == {"stage2": {"min_confidence": 0.7}}
    # PyYAML reads `3e-4` as a string (YAML 1.1 wants `3.0e-4`): numbers fields accept it
    cfg = config_from_dict(base(files), overrides=parse_override("strong.train.learning_rate=3e-4"))
    assert cfg.strong.train["learning_rate"] == 3e-4
    with pytest.raises(ConfigError):
        parse_override("nokey")


def test_example_configs_load_on_the_data_w2s_data_writes(tmp_path, shared_data):
    """Each example reads what `w2s data gsm8k|math --out data/...` writes at the repository root."""
    import shutil

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for name in ("tiny_cpu", "gsm8k_llama3", "gsm8k_llama2"):  # a fresh clone: one clear line
        with pytest.raises(ConfigError, match=r"data\.gold: file not found: .*w2s data gsm8k --out data/gsm8k"):
            load_config(tmp_path / "examples" / f"{name}.yaml")
    proc = subprocess.run([sys.executable, "-m", "w2s", "data", "gsm8k", "--from", str(shared_data / "gsm8k"),
                           "--out", str(tmp_path / "data" / "gsm8k")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("tiny_cpu", "gsm8k_llama3", "gsm8k_llama2"):
        load_config(tmp_path / "examples" / f"{name}.yaml")
    with pytest.raises(ConfigError, match="data.gold: file not found"):
        load_config(tmp_path / "examples" / "math_qwen.yaml")  # the user's own MATH split


def test_cli_config_error_is_fast_and_names_the_key(files):
    raw = base(files)
    raw["stage2"] = {"flip_confidense": 0.9}
    path = files / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "w2s", "run", str(path), "--out", str(files / "run")],
                          capture_output=True, text=True)
    elapsed = time.time() - t0
    assert proc.returncode == 2
    assert "stage2.flip_confidense: unknown key" in proc.stderr
    assert elapsed < 5  # interpreter start included; the validation itself is milliseconds
    assert not (files / "run" / "manifest.json").exists()


def test_a_misspelled_task_option_names_the_key_and_the_nearest(files):
    raw = base(files)
    raw["task"] = {"name": "custom", "answer_fild": "gold"}
    with pytest.raises(ConfigError, match=r"task\.answer_fild: unknown option of task 'custom' .*did you mean 'answer_field'\?"):
        config_from_dict(raw)
    raw["task"] = "gsm8kk"
    with pytest.raises(ConfigError, match=r"task: unknown task 'gsm8kk' .*did you mean 'gsm8k'\?"):
        config_from_dict(raw)


def test_a_misspelled_key_gets_the_nearest_valid_one(files):
    raw = base(files)
    raw["stage2"] = {"flip_confidense": 0.9}
    with pytest.raises(ConfigError, match=r"stage2\.flip_confidense: unknown key .*did you mean 'stage2\.flip_confidence'\?"):
        config_from_dict(raw)


def test_a_generation_option_no_backend_of_the_run_takes_is_refused(files):
    raw = base(files)
    raw["generation"] = {"backend": "hf", "options": {"batch_sise": 8}}
    with pytest.raises(ConfigError, match=r"generation\.options\.batch_sise: unknown option of the hf backend .*did you mean 'batch_size'\?"):
        config_from_dict(raw)
    raw["generation"] = {"backend": "vllm", "options": {"tensor_parallel_size": 2, "batch_size": 8}}
    raw["weak"] = {**raw["weak"], "backend": "hf"}  # batch_size is the weak model's (hf) option
    config_from_dict(raw)
