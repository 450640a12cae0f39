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


# ---- side by side: parallel stages in forked one-thread processes ----------------------------
def _side_stages(fail=None):
    """a -> {e1, e2, e3} (parallel leaves: each records its pid, threads and time span) -> r."""
    import os
    import time

    def leaf(name, seconds):
        def fn(ctx):
            import torch

            t0 = time.time()
            time.sleep(seconds)
            if name == fail:
                raise ValueError(f"{name} broke")
            ctx.path(f"{name}.json").write_text(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads(),
                                                            "span": [t0, time.time()],
                                                            "a": ctx.path("a.txt").read_text()}))
            return {"leaf": name}
        return fn

    def main_line(ctx):
        import torch

        ctx.path("m.json").write_text(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads(),
                                                  "span": [time.time(), time.time()]}))

    def report(ctx):
        ctx.path("r.txt").write_text(",".join(sorted(json.loads(ctx.path(f"e{i}.json").read_text())["a"] + str(i)
                                                     for i in (1, 2, 3))))

    return [Stage("a", lambda ctx: ctx.path("a.txt").write_text("A"), outputs=["a.txt"]),
            *[Stage(f"e{i}", leaf(f"e{i}", s), deps=["a"], outputs=[f"e{i}.json"], parallel=True)
              for i, s in ((1, 0.3), (2, 1.5), (3, 0.3))],
            Stage("m", main_line, deps=["e1"], outputs=["m.json"]),
            Stage("r", report, deps=["e1", "e2", "e3", "m"], outputs=["r.txt"])]


def test_parallel_stages_run_side_by_side_in_one_thread_children(tmp_path):
    import os

    pytest.importorskip("torch")  # imported here, as in a run: the children inherit it

    events = []
    m = run_stages(_side_stages(), tmp_path, workers=2, weight=lambda s: {"e2": 3.0}.get(s.name, 1.0),
                   on_event=lambda ev, st, info: events.append((ev, st.name)))
    leaves = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("e1", "e2", "e3")}
    assert (tmp_path / "r.txt").read_text() == "A1,A2,A3"
    assert all(v["pid"] != os.getpid() and v["threads"] == 1 for v in leaves.values())
    # e1 first (m waits on it, and r on m), the heaviest (e2) beside it; then m (main line, ready
    # once e1 is done) here with the one thread the child leaves, then e3
    assert [n for ev, n in events if ev == "start"] == ["a", "e1", "e2", "m", "e3", "r"]
    e2, m_line = leaves["e2"]["span"], json.loads((tmp_path / "m.json").read_text())
    assert all(leaves[n]["span"][0] < e2[1] for n in ("e1", "e3")) and m_line["span"][0] < e2[1]
    assert m_line["pid"] == os.getpid() and m_line["threads"] == 1
    assert all(m.entry(n)["status"] == "done" and m.entry(n)["info"] == {"leaf": n} for n in ("e1", "e2", "e3"))
    # the same run sequentially: everything cached (same keys and fingerprints)
    calls = []
    run_stages(_side_stages(), tmp_path, on_event=lambda ev, st, info: calls.append((ev, st.name)))
    assert {ev for ev, _ in calls} == {"cached"}


def test_a_failing_side_stage_is_named_and_the_others_finish(tmp_path):
    from w2s.pipeline.dag import StageFailed

    with pytest.raises(StageFailed) as err:
        run_stages(_side_stages(fail="e1"), tmp_path, workers=2)
    assert err.value.stage == "e1" and "e1 broke" in str(err.value)
    assert "ValueError: e1 broke" in (tmp_path / "work" / "e1.log").read_text()  # its traceback is kept
    m = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    # e2 ran beside e1 and finished; nothing new started after the failure
    assert m["e1"]["status"] == "failed" and m["e2"]["status"] == "done" and "e3" not in m and "r" not in m
    # fixed, rerun: only what is left runs
    calls = []
    run_stages(_side_stages(), tmp_path, workers=2, on_event=lambda ev, st, info: calls.append((ev, st.name)))
    assert [n for ev, n in calls if ev == "start"] == ["e1", "e3", "m", "r"]



def test_a_side_stage_that_ends_while_the_main_line_runs_is_timed_by_its_own_clock(tmp_path):
    """A child that ends while this process runs a main-line stage is collected at the next look,
    not after the main line's next wait, and its seconds are its own run, not the time until then."""
    import time

    pytest.importorskip("torch")

    def slow_main(ctx):
        time.sleep(2.0)
        ctx.path("m.json").write_text("{}")

    stages = _side_stages()
    stages = [stages[0], stages[1], stages[2], Stage("m", slow_main, deps=["e1"], outputs=["m.json"]),
              Stage("r", lambda ctx: ctx.path("r.txt").write_text("done"), deps=["e2", "m"], outputs=["r.txt"])]
    m = run_stages(stages, tmp_path, workers=2)   # e1 (0.3 s) and e2 (1.5 s) side by side, then m (2 s) here
    assert m.entry("e2")["status"] == "done" and 1.4 <= m.entry("e2")["seconds"] < 1.9


def test_a_ready_leaf_runs_beside_the_main_line_instead_of_after_it(tmp_path):
    """Both cores busy from the start: when a leaf and a main-line stage are ready together, the
    leaf goes to a one-thread child and the main line runs here on the other thread."""
    import os

    pytest.importorskip("torch")
    stages = _side_stages()
    stages = [stages[0], stages[2], Stage("m", stages[4].fn, deps=["a"], outputs=["m.json"]),
              Stage("r", lambda ctx: ctx.path("r.txt").write_text("done"), deps=["e2", "m"], outputs=["r.txt"])]
    events = []
    run_stages(stages, tmp_path, workers=2, on_event=lambda ev, st, info: events.append((ev, st.name)))
    assert [n for ev, n in events if ev == "start"] == ["a", "e2", "m", "r"]
    e2, m_line = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("e2", "m"))
    assert e2["pid"] != os.getpid() and e2["threads"] == 1
    assert m_line["pid"] == os.getpid() and m_line["threads"] == 1
    # beside the child, not after it (the child's own start may lag: a process takes time to spawn)
    assert m_line["span"][0] < e2["span"][1]
