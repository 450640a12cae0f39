"""Issue 19, round two: a run config cannot exhaust memory or time before the first stage.
Values that multiply work have upper bounds, YAML aliases and nesting are bounded before
anything is built, `--set` values go through the same loader, and non-finite numbers are
refused; each case is one clear error naming the key (or the file), never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from w2s.pipeline.config import ConfigError, config_from_dict, load_config, parse_override


@pytest.fixture
def files(tmp_path):
    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1", "solution": "1\\n#### 1"}\n')
    return tmp_path


def good(files) -> dict:
    return {"task": "gsm8k",
            "data": {"gold": str(files / "gold.jsonl"), "unlabeled": str(files / "unl.jsonl"),
                     "test": str(files / "test.jsonl")},
            "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}


def write(files, text: str) -> Path:
    path = files / "bad.yaml"
    path.write_text(text)
    return path


def head(files) -> str:
    return yaml.safe_dump(good(files))


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 "xxxxxxxxxx"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines)


def peak_mb_of(code: str, probe: str) -> tuple[int, str]:
    """Run `code` in a fresh interpreter; its own peak RSS in MB (`probe`: conftest's) and its output."""
    proc = subprocess.run([sys.executable, "-c", probe + code], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    found = re.search(r"PEAK_RSS_KB (\d+)", out)
    assert found, out
    return int(found.group(1)) // 1024, out


@pytest.mark.parametrize("key, value, message", [
    ("stage1.iterations", 100000, "stage1.iterations: must be <= 20, got 100000"),
    ("stage1.iterations", "1e23", "stage1.iterations: expected an integer, got str '1e23'"),
    ("stage2.samples", 10**9, "stage2.samples: must be <= 1000"),
    ("stage3.rounds", 10**6, "stage3.rounds: must be <= 100"),
    ("eval.n", 10**7, "eval.n: must be <= 1000"),
    ("generation.max_new_tokens", 10**12, "generation.max_new_tokens: must be <= 131072"),
    ("stage2.temperature", float("inf"), "stage2.temperature: must be a finite number, got inf"),
    ("eval.temperature", float("nan"), "eval.temperature: must be a finite number, got nan"),
    ("eval.sweep_temperatures", [0.5, 0.0], "eval.sweep_temperatures[1]: must be > 0, got 0.0"),
    ("eval.sweep_temperatures", [0.5] * 21, "eval.sweep_temperatures: List should have at most 20 items"),
])
def test_values_that_multiply_work_are_bounded(files, key, value, message):
    raw = good(files)
    section, name = key.split(".")
    raw[section] = {name: value}
    t0 = time.time()
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict(raw)
    assert time.time() - t0 < 1


def test_an_alias_bomb_is_refused_before_it_expands(files):
    for where in ("generation:\n  options:\n    x: *a9\n", "name: *a9\n"):
        path = write(files, head(files) + alias_bomb() + "\n" + where)
        with pytest.raises(ConfigError, match=r"bad\.yaml: expands to more than 100000 values \(YAML aliases\?\)"):
            load_config(path)
    # a few shared anchors (what people use them for) are fine
    path = write(files, head(files) + "common: &c {learning_rate: 1.0e-4}\n")
    with pytest.raises(ConfigError, match="common: unknown key"):
        load_config(path)


def test_deep_nesting_is_one_error_not_a_recursion_error(files):
    deep = "x: " + "[" * 50_000 + "]" * 50_000 + "\n"
    with pytest.raises(ConfigError, match=r"bad\.yaml: nested deeper than 64 levels"):
        load_config(write(files, head(files) + deep))
    block = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        load_config(write(files, head(files) + block))


@pytest.mark.parametrize("text, message", [
    ("stage2.min_confidence=!!python/object/apply:os.system ['true']", "--set stage2.min_confidence: invalid YAML"),
    ("name=*a", "--set name: invalid YAML"),
    ("nokey", "expected KEY=VALUE"),
    ("a..b=1", "expected a dotted key"),
])
def test_set_values_use_the_same_safe_loader(text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_override(text)


def test_cli_refuses_a_python_tag_in_set_with_exit_2(files, tmp_path):
    path = write(files, head(files))
    proc = subprocess.run([sys.executable, "-m", "w2s", "run", str(path), "--out", str(tmp_path / "run"),
                           "--set", "name=!!python/name:os.system"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("config error: --set name: invalid YAML") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra", ["stage1:\n  iterations: 100000\n", "stage1:\n  iterations: 1e23\n",
                                   alias_bomb() + "\ngeneration:\n  options:\n    x: *a9\n"])
def test_the_worst_configs_stay_small_in_memory(files, tmp_path, extra, peak_rss_probe):
    path = write(files, head(files) + extra)
    code = textwrap.dedent(f"""
        from w2s.pipeline import run_pipeline, ConfigError
        try:
            run_pipeline({str(path)!r}, {str(tmp_path / 'run')!r}, until="load_data")
        except ConfigError as e:
            print("REFUSED", e)
    """)
    t0 = time.time()
    peak, out = peak_mb_of(code, peak_rss_probe)
    assert "REFUSED" in out and "Traceback" not in out, out
    assert peak < 300, f"peak RSS {peak} MB"
    assert time.time() - t0 < 30
    assert not (tmp_path / "run").exists()
