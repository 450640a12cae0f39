"""Run-directory safety, with real processes: one writer per run directory (a second run is
refused, a dead holder's lock is taken over), resume after kill -9 whatever the spelling of
--out, a damaged manifest named in one line, and every config range error at load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from w2s.pipeline.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def w2s(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2s", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300, **kw)


def start_w2s(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "w2s", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True, **kw)


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def tiny_config(tmp_path, shared_data) -> Path:
    """The whole pipeline in ~20 s on one CPU thread: untrained tiny models, a handful of
    questions, one optimizer step per training, Stage II off. Weak answers are generated one
    per batch so a kill lands between streamed records."""
    gsm = shared_data / "gsm8k"
    spec = "tiny:layers=1,hidden=16,heads=2,vocab=300,steps=0"
    train = {"learning_rate": 1.0e-3, "max_steps": 1, "batch_size": 4, "max_length": 128}
    cfg = {"task": "gsm8k", "seed": 0, "threads": 1,
           "data": {"gold": str(gsm / "train_1.jsonl"), "unlabeled": str(gsm / "train_2.jsonl"),
                    "test": str(gsm / "test.jsonl"), "limit_gold": 16, "limit_unlabeled": 16, "limit_test": 4},
           "weak": {"model": spec, "train": train},
           "strong": {"model": spec + ",seed=1", "train": train},
           "generation": {"max_new_tokens": 16, "options": {"batch_size": 1}},
           "stage1": {"iterations": 1, "shots": 1, "variants": ["hybrid"]},
           "stage2": {"enabled": False}, "baselines": ["weak"], "eval": {"n": 0}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---- one writer per run directory ---------------------------------------------------------------

#: a `w2s` process whose imports are done before it is told to go: on a loaded machine a cold start
#: (seconds) could outlast the rest of the tiny first run, which then left the lock free
READY_THEN_RUN = ("import sys\nimport w2s.pipeline, w2s.pipeline.rehearse, w2s.plan\nfrom w2s.cli import main\n"
                  "print('ready', flush=True)\nsys.stdin.readline()\nsys.argv[0] = 'w2s'\nmain()\n")


def test_a_second_run_on_the_same_directory_is_refused_and_the_first_completes(tmp_path, tiny_config):
    run = tmp_path / "run"
    second = subprocess.Popen([sys.executable, "-c", READY_THEN_RUN, "run", str(tiny_config), "--out", str(run),
                               "--set", "seed=7"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV)
    assert second.stdout.readline().strip() == "ready"
    first = start_w2s("run", tiny_config, "--out", run, "--quiet")
    try:
        wait_for(lambda: (run / "manifest.json").exists(), first)  # holding the lock, mid-run
        t0 = time.time()
        _, err = second.communicate("go\n", timeout=120)
        assert time.time() - t0 < 30  # refused at once, not after waiting
        assert second.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "is in use by another run" in lines[0], err
        assert f"pid {first.pid} " in lines[0] and "since" in lines[0]
        assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                os.killpg(first.pid, signal.SIGKILL) if proc is first else proc.kill()
    m = manifest(run)
    assert len(m["invocations"]) == 1                        # the second did not start an invocation
    assert all(e["status"] == "done" for e in m["stages"].values())
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 0   # nor rewrite the config
    assert (run / ".lock").read_text() == ""                 # released cleanly


HOLD = ("import sys, time\nfrom w2s.pipeline.lock import run_lock\n"
        "with run_lock(sys.argv[1], 'holder'):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def test_a_dead_holders_lock_is_taken_over_with_a_message(tmp_path, capsys):
    from w2s.pipeline.lock import RunLocked, run_lock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=rf"in use by another run \(pid {holder.pid} on .*'holder'\)"):
            with run_lock(run):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock file still names it
        holder.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    with run_lock(run):
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    assert f"taking over a stale lock from pid {holder.pid}" in capsys.readouterr().err
    with run_lock(run):  # released cleanly last time: nothing stale to report
        pass
    assert "stale" not in capsys.readouterr().err


def test_demo_is_refused_on_a_held_directory_before_writing_its_data(tmp_path):
    run = tmp_path / "demo"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = w2s("demo", "--quick", "--out", run)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert f"is in use by another run (pid {holder.pid} " in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no toy data, no demo.yaml


def test_the_lock_is_reentrant_in_one_process_whatever_the_spelling(tmp_path, monkeypatch):
    from w2s.pipeline.lock import run_lock

    monkeypatch.chdir(tmp_path)
    with run_lock("run"):  # what `w2s demo` does before its pipeline takes the lock again
        with run_lock(str(tmp_path / "run") + "/"):
            pass
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()  # still held


# ---- resume whatever the spelling of --out ------------------------------------------------------

def test_resume_after_kill_with_another_spelling_of_out(tmp_path, tiny_config):
    rel = Path("runs") / "x"
    run = tmp_path / rel
    proc = start_w2s("run", tiny_config, "--out", rel, "--quiet", cwd=tmp_path)

    def partial_weak_answers():
        work = list(run.glob("work/weak_answers-*.jsonl"))
        return bool(work) and work[0].read_text().count("\n") >= 2

    try:
        wait_for(partial_weak_answers, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {n for n, e in manifest(run)["stages"].items() if e["status"] == "done"}
    assert {"load_data", "base_weak", "weak_sft"} <= done_before
    partial = [json.loads(line) for line in next(run.glob("work/weak_answers-*.jsonl")).read_text().splitlines()
               if line.endswith("}")]

    again = w2s("run", tiny_config, "--out", str(run.resolve()) + "/", "--quiet", cwd=ROOT)  # absolute, slash
    assert again.returncode == 0, again.stderr[-3000:]
    m = manifest(run)
    last = m["invocations"][-1]
    assert done_before <= set(last["cached"]) and not done_before & set(last["ran"])
    assert m["stages"]["weak_answers"]["resumed"] is True
    final = {r["id"]: r for r in map(json.loads, (run / "data" / "d_weak.jsonl").read_text().splitlines())}
    for r in partial:  # what was generated before the kill is kept, not generated again
        assert final[r["id"]] == r

    (tmp_path / "link").symlink_to(run)  # a finished run through a symlink: everything cached
    third = w2s("run", tiny_config, "--out", tmp_path / "link", "--quiet")
    assert third.returncode == 0, third.stderr[-3000:]
    assert manifest(run)["invocations"][-1]["ran"] == ["report"]  # the report always reruns


def test_generation_resumes_with_another_spelling_of_the_model_path(tiny_model, tmp_path, monkeypatch):
    from w2s.generation import SamplingConfig, generate

    ps = [{"id": f"q{i}", "prompt": f"Question: {i} plus {i}?\nAnswer:"} for i in range(3)]
    greedy = SamplingConfig(max_new_tokens=4)
    out = tmp_path / "g.jsonl"
    (tmp_path / "link").symlink_to(tiny_model)
    monkeypatch.chdir(tiny_model.parent)
    first = generate(tiny_model.name, ps[:2], greedy, out_path=out, progress=False)  # cwd-relative
    calls = []
    import w2s.generation.resumable as runner
    real = runner.make_backend
    monkeypatch.setattr(runner, "make_backend", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    again = generate(str(tmp_path / "link") + "/", ps, greedy, out_path=out, progress=False)  # symlink, slash
    assert again[:2] == first and len(again) == 3 and calls == [1]  # resumed: one new prompt generated
    with pytest.raises(ValueError, match="was generated by"):  # another model is still refused
        generate(str(tmp_path), ps, greedy, out_path=out, progress=False)


# ---- damaged run-directory files ----------------------------------------------------------------

def test_a_corrupted_manifest_is_one_line_naming_the_file(tmp_path):
    from w2s.pipeline.dag import ManifestError, Stage, run_stages

    def write(ctx):
        ctx.path("a.txt").write_text("A")

    stages = [Stage("a", write, outputs=["a.txt"])]
    run_stages(stages, tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(text[: len(text) // 2])  # torn by hand or another tool
    with pytest.raises(ManifestError) as e:
        run_stages(stages, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'manifest.json'} is not valid JSON (line ") and "\n" not in msg
    assert "delete it to recompute" in msg
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="is not a w2s manifest"):
        run_stages(stages, tmp_path)


def test_cli_corrupted_manifest_exits_2_naming_it(tmp_path, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    torn = '{"stages": {"load_data": {"key": "abc'
    (run / "manifest.json").write_text(torn)
    proc = w2s("run", tiny_config, "--out", run)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {run / 'manifest.json'} is not valid JSON (line 1 col 34: Unterminated string starting at); "
        "restore it, or delete it to recompute every stage"]
    assert (run / "manifest.json").read_text() == torn  # left as it was


def test_a_corrupted_eval_file_names_itself_in_the_report(tmp_path):
    from w2s.io import DataError
    from w2s.report import ModelRef, collect_metrics

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "weak.json").write_text('{"accuracy": 0.5,')
    with pytest.raises(DataError, match=r"eval/weak\.json: not valid JSON \(line 1 col 18"):
        collect_metrics(tmp_path, {"weak": ModelRef("weak_sft", "weak")})


# ---- config ranges, at load, naming the key and the file ---------------------------------------

def _training_refuses(field: str, value) -> bool:
    from w2s.training.settings import SFTSettings

    try:
        SFTSettings(**{field: value})
    except ValueError:
        return True
    return False


RANGE_ERRORS = [
    ("eval.n", -1), ("eval.temperature", -1), ("stage2.temperature", 0), ("stage2.top_p", 5),
    ("stage2.top_p", 0), ("stage2.max_pairs", 0), ("stage2.min_confidence", 1.5),
    ("stage2.flip_confidence", -0.1), ("stage2.samples", 1), ("strong.train.learning_rate", -1),
    ("weak.train.max_steps", -5), ("strong.train.batch_size", 0), ("generation.options.batch_size", 0),
    ("generation.max_new_tokens", 0), ("weak.model", "tiny:layers=-1"), ("strong.model", "tiny:hidden=30"),
    ("data.limit_test", -5), ("data.limit_test", 0), ("data.limit_gold", 0), ("threads", -1),
    ("stage1.iterations", 0), ("stage1.shots", -1), ("eval.temperature", 0),
]


@pytest.fixture
def files(tmp_path):
    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1", "solution": "1\\n#### 1"}\n')
    return tmp_path


def good_config(files) -> dict:
    return {"task": "gsm8k",
            "data": {"gold": str(files / "gold.jsonl"), "unlabeled": str(files / "unl.jsonl"),
                     "test": str(files / "test.jsonl")},
            "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}, "eval": {"n": 2}}


def config_with(files, key: str, value) -> Path:
    raw = good_config(files)
    *sections, last = key.split(".")
    node = raw
    for s in sections:
        node = node.setdefault(s, {})
    node[last] = value
    path = files / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_good_config_loads(files):
    load_config(config_with(files, "seed", 0))


@pytest.mark.parametrize("key, value", RANGE_ERRORS)
def test_range_errors_at_load_name_the_key_and_file_before_any_stage(files, key, value):
    from w2s.pipeline import run_pipeline

    if key.split(".")[-1] in ("learning_rate", "max_steps") and not _training_refuses(key.split(".")[-1], value):
        pytest.skip("w2s.training's settings do not range-check this field yet (another change adds it)")
    path = config_with(files, key, value)
    with pytest.raises(ConfigError) as e:
        run_pipeline(path, files / "run")
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: ") and "\n" not in msg, msg
    assert not (files / "run").exists()  # nothing ran, nothing was written


def test_cli_range_error_exits_2_before_any_stage(files):
    proc = w2s("run", config_with(files, "data.limit_test", -5), "--out", files / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"config error: {files / 'bad.yaml'}: data.limit_test: must be >= 1 "
                                   "(leave it out for every row), got -5")
    assert not (files / "run").exists()
