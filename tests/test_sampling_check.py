"""Issue 19, item 1: NaN / inf sampling settings gave silent garbage (identical degenerate
samples, random tokens) and exit 0. One check refuses them at every entry point, naming the
option as that entry point spells it."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from w2s.cli import app, _register
from w2s.generation import SamplingConfig
from w2s.generation.sampling import check_sampling

_register()


@pytest.mark.parametrize("field, value", [("temperature", math.nan), ("temperature", math.inf), ("temperature", -1.0),
                                          ("top_p", math.nan), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1),
                                          ("n", 0), ("max_new_tokens", 0), ("n", True)])
def test_the_check_refuses_non_finite_and_out_of_range(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        check_sampling(**{field: value})
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        SamplingConfig(**{"max_new_tokens": 4, field: value})
    with pytest.raises(ValueError, match=r"^--x: must be"):
        check_sampling(**{field: value}, names={field: "--x"})


@pytest.mark.parametrize("args, option", [(["generate", "--temperature", "nan"], "--temperature"),
                                          (["generate", "--top-p", "inf"], "--top-p"),
                                          (["eval", "--temperature", "nan", "--n", "2"], "--temperature")])
def test_the_cli_refuses_before_loading_anything(tmp_path, args, option):
    common = ["-m", str(tmp_path / "no_model"), "-t", "gsm8k"]
    data = ["-i", str(tmp_path / "q.jsonl"), "-o", str(tmp_path / "o.jsonl")] if args[0] == "generate" else \
        ["-d", str(tmp_path / "q.jsonl"), "-o", str(tmp_path / "m.json")]
    result = CliRunner().invoke(app, args + common + data)
    assert result.exit_code == 2, result.output
    assert f"{option}: must be a" in result.output
    assert not list(tmp_path.iterdir())


def test_the_run_config_uses_the_same_check(tmp_path):
    from w2s.pipeline.config import ConfigError, config_from_dict

    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    raw = {"task": "gsm8k", "data": {"gold": str(tmp_path / "gold.jsonl"), "unlabeled": str(tmp_path / "unl.jsonl"),
                                     "test": str(tmp_path / "test.jsonl")},
           "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}
    with pytest.raises(ConfigError, match=r"stage2\.top_p: must be"):
        config_from_dict({**raw, "stage2": {"top_p": 1.5}})
    with pytest.raises(ConfigError, match=r"stage2\.temperature: must be a finite number"):
        config_from_dict({**raw, "stage2": {"temperature": math.inf}})
