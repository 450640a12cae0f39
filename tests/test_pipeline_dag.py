"""The stage runner on toy stages: caching, invalidation, resume, --only/--until/--force."""

import json

import pytest

from w2s.pipeline.dag import Stage, run_stages


def make_stages(calls, params_b=None, fail_in=None):
    def writer(name, text_fn):
        def fn(ctx):
            calls.append(name)
            if fail_in == name:
                raise KeyboardInterrupt  # a crash mid-stage
            ctx.path(f"{name}.txt").write_text(text_fn(ctx))
        return fn

    return [
        Stage("a", writer("a", lambda ctx: "A"), outputs=["a.txt"]),
        Stage("b", writer("b", lambda ctx: ctx.path("a.txt").read_text() + str(params_b)), deps=["a"],
              params={"x": params_b}, outputs=["b.txt"]),
        Stage("c", writer("c", lambda ctx: ctx.path("b.txt").read_text() + "C"), deps=["b"], outputs=["c.txt"]),
        Stage("d", writer("d", lambda ctx: ctx.path("a.txt").read_text() + "D"), deps=["a"], outputs=["d.txt"]),
    ]


def test_second_run_is_fully_cached(tmp_path):
    calls = []
    run_stages(make_stages(calls, 1), tmp_path)
    assert calls == ["a", "b", "c", "d"]
    calls.clear()
    m = run_stages(make_stages(calls, 1), tmp_path)
    assert calls == []
    assert m.data["invocations"][-1]["cached"] == ["a", "b", "c", "d"]


def test_changed_param_reruns_only_downstream(tmp_path):
    calls = []
    run_stages(make_stages(calls, 1), tmp_path)
    calls.clear()
    run_stages(make_stages(calls, 2), tmp_path)
    assert calls == ["b", "c"]          # a and d do not depend on b's parameter
    assert (tmp_path / "c.txt").read_text() == "A2C"


def test_identical_output_does_not_invalidate_downstream(tmp_path):
    calls = []
    run_stages(make_stages(calls, 1), tmp_path)
    calls.clear()
    m = run_stages(make_stages(calls, 1), tmp_path, force=["a"])
    assert calls == ["a"]               # a reproduced the same file: b, c, d stay cached
    assert m.data["invocations"][-1]["ran"] == ["a"]


def test_crash_then_resume_keeps_finished_work(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, 1, fail_in="c"), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"]["c"]["status"] == "running"
    assert manifest["stages"]["b"]["status"] == "done"
    calls.clear()
    run_stages(make_stages(calls, 1), tmp_path)
    assert calls == ["c", "d"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"]["c"]["resumed"] is True
    assert manifest["stages"]["c"]["attempts"] == 2


def test_until_and_only(tmp_path):
    calls = []
    run_stages(make_stages(calls, 1), tmp_path, until="b")
    assert calls == ["a", "b"]
    calls.clear()
    run_stages(make_stages(calls, 1), tmp_path, only=["d"])
    assert calls == ["d"]
    with pytest.raises(RuntimeError, match="needs 'b'"):
        run_stages(make_stages([], 1), tmp_path / "fresh", only=["c"])
    with pytest.raises(ValueError, match="unknown stage"):
        run_stages(make_stages([], 1), tmp_path, until="nope")


def test_missing_output_is_an_error(tmp_path):
    stages = [Stage("a", lambda ctx: None, outputs=["never.txt"])]
    with pytest.raises(RuntimeError, match="did not write"):
        run_stages(stages, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["stages"]["a"]["status"] == "failed"
