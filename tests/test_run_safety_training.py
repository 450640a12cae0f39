"""Training never loses a model, and no command writes over its own input (issue 11).

Real processes where the fault is a process fault (kill -9, memory); the CLI in-process where the
refusal happens before anything is loaded. The model is the shipped toy weak checkpoint (680 KB).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from w2s.io import write_jsonl
from w2s.training import SFTSettings, is_complete, read_lineage, train_sft
from w2s.training import outdir as od

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "src" / "w2s" / "toy" / "checkpoints" / "weak"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _sft(path: Path, n: int = 16) -> Path:
    write_jsonl(path, [{"id": str(i), "prompt": f"Q {i}?\nA:", "completion": f" {i} #### {i}"} for i in range(n)])
    return path


def _w2s(*args) -> list[str]:
    return [sys.executable, "-m", "w2s", *map(str, args)]


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------
# kill -9 while retraining into a directory that holds a complete model
# ---------------------------------------------------------------------------------------------
def test_kill9_during_retrain_keeps_the_old_model_and_rerun_completes(tmp_path):
    data = _sft(tmp_path / "sft.jsonl")
    out = tmp_path / "OUT"
    fast = dict(batch_size=2, max_length=64, learning_rate=1e-3, save_steps=2)
    train_sft(TOY, data, out, SFTSettings(max_steps=2, **fast))
    old = (out / "model.safetensors").read_bytes()

    # enough steps that the kill lands mid-training however fast a step is (16 once finished
    # within the 0.3 s after the first checkpoint, and the kill hit the finished run's exit)
    cmd = _w2s("train", "sft", "-m", TOY, "-d", data, "-o", out, "--max-steps", 120, "--batch-size", 2,
               "--max-length", 64, "--lr", 1e-3, "--save-steps", 2, "--seed", 7)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".OUT.w2s-*/checkpoints/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, f"finished before a checkpoint: {proc.stderr.read()[-2000:]}"
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)                                          # a random point of the next steps
        os.kill(proc.pid, signal.SIGKILL)                        # mid-training
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    assert (out / "model.safetensors").read_bytes() == old and is_complete(out)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)                   # still loadable

    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lineage = read_lineage(out)
    assert lineage["global_step"] == 120 and lineage["resumed_from"] is not None  # resumed, not restarted
    assert (out / "model.safetensors").read_bytes() != old
    assert not list(tmp_path.glob(".OUT.w2s-*"))               # no staging left behind


def test_partial_checkpoint_is_not_resumed(tmp_path):
    from w2s.training import trl_compat

    for step, state in ((2, "{}"), (4, None), (6, '{"torn')):   # 4: killed before its state, 6: mid-write
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    assert trl_compat.last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    trl_compat.last_checkpoint(str(tmp_path), drop_partial=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


def test_crash_between_the_two_renames_is_repaired(tmp_path, monkeypatch):
    out, stage = tmp_path / "m", tmp_path / ".m.w2s-new"
    for d, text in ((out, "old"), (stage, "new")):
        d.mkdir()
        (d / "model.safetensors").write_text(text)
        (d / "DONE").write_text("x")
    real, calls = os.rename, []

    def crash_on_second(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise OSError("simulated crash")
        real(a, b)

    monkeypatch.setattr(od.os, "rename", crash_on_second)
    with pytest.raises(OSError, match="simulated"):
        od.publish(stage, out)
    monkeypatch.setattr(od.os, "rename", real)
    assert not out.exists()                                    # the gap: OUT renamed away
    od.recover(out)                                            # what every writer does first
    assert (out / "model.safetensors").read_text() == "old"
    od.publish(stage, out)
    assert (out / "model.safetensors").read_text() == "new" and not list(tmp_path.glob(".m.w2s-*"))


def test_incomplete_staging_is_never_published(tmp_path):
    stage = tmp_path / ".m.w2s-x"
    stage.mkdir()
    with pytest.raises(RuntimeError, match="not complete"):
        od.publish(stage, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------
# outputs that are, contain or lie inside an input
# ---------------------------------------------------------------------------------------------
def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(tmp_path):
    m = tmp_path / "M"
    shutil.copytree(TOY, m)
    q = tmp_path / "q.jsonl"
    write_jsonl(q, [{"id": str(i), "question": f"What is {i}+1?", "answer": f"#### {i + 1}"} for i in range(3)])
    g = tmp_path / "gens.jsonl"
    write_jsonl(g, [{"id": str(i), "question": f"What is {i}+1?", "answer": f"#### {i + 1}",
                     "prompt": f"Question: What is {i}+1?\nAnswer:", "response": f"#### {i + 1}"}
                    for i in range(3)])
    _sft(tmp_path / "sft.jsonl", 4)
    write_jsonl(tmp_path / "prefs.jsonl", [{"id": "1", "prompt": "Q?\nA:", "chosen": " 1", "rejected": " 2"}])
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["train", "sft", "-m", "M", "-d", "sft.jsonl", "-o", "M"], "output is the input M"),
    (["train", "sft", "-m", "M", "-d", "sft.jsonl", "-o", "M/sub"], "inside the input directory M"),
    (["train", "sft", "-m", "M", "-d", "sft.jsonl", "-o", "sft.jsonl"], "output is the input sft.jsonl"),
    (["train", "sft", "-m", "M", "-d", "sft.jsonl", "-o", "."], "contains the input"),
    (["train", "dpo", "-m", "M", "-d", "prefs.jsonl", "-o", "M"], "output is the input M"),
    (["eval", "-t", "gsm8k", "-m", "M", "-d", "q.jsonl", "-o", "q.jsonl"], "output is the input q.jsonl"),
    (["eval", "-t", "gsm8k", "-m", "M", "-d", "q.jsonl", "-o", "M/metrics.json"], "inside the input directory M"),
    (["grade", "--task", "gsm8k", "--input", "gens.jsonl", "--out", "gens.jsonl"], "output is the input"),
    (["select", "--task", "gsm8k", "--weak", "gens.jsonl", "--icl", "gens.jsonl", "--out", "."],
     "contains the input"),
    (["pairs", "--task", "gsm8k", "--weak", "gens.jsonl", "--samples", "gens.jsonl", "--out", "gens.jsonl"],
     "output is the input"),
    (["export", "--format", "trl", "--input", "sft.jsonl", "--out", "sft.jsonl"], "output is the input"),
    (["generate", "-m", "M", "-i", "q.jsonl", "-o", "q.jsonl"], "output is the input q.jsonl"),
    (["generate", "-m", "M", "-i", "q.jsonl", "-o", "M/gens.jsonl"], "inside the input directory M"),
])
def test_output_over_an_input_is_refused(cli, workspace, monkeypatch, args, message):
    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    res = cli(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert _snapshot(workspace) == before                     # nothing written, nothing removed


def test_merge_into_its_adapter_is_refused(cli, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(TOY)}))
    res = cli("merge", "--adapter", adapter, "--out", adapter / "merged")
    assert res.exit_code == 2 and "inside the input directory" in res.output
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json"]


@pytest.mark.parametrize("args, message", [
    (["grade", "--task", "gsm8k", "--input", "gens.jsonl", "--out", "adir"], "is a directory"),
    (["export", "--format", "trl", "--input", "sft.jsonl", "--out", "adir"], "is a directory"),
    (["select", "--task", "gsm8k", "--weak", "gens.jsonl", "--icl", "gens.jsonl", "--out", "afile"], "is a file"),
    (["train", "sft", "-m", "M", "-d", "sft.jsonl", "-o", "afile"], "is a file"),
    (["generate", "-m", "./no/such/model", "-i", "q.jsonl", "-o", "new.jsonl"], "model path not found"),
    (["eval", "-t", "gsm8k", "-m", "./no/such/model", "-d", "q.jsonl", "-o", "new.json"], "model path not found"),
    (["train", "sft", "-m", "M/missing", "-d", "sft.jsonl", "-o", "new"], "model path not found"),
])
def test_unwritable_output_or_missing_model_is_a_clean_error(cli, workspace, monkeypatch, args, message):
    monkeypatch.chdir(workspace)
    (workspace / "adir").mkdir()
    (workspace / "afile").write_text("keep")
    before = _snapshot(workspace)
    res = cli(*args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert _snapshot(workspace) == before and not (workspace / "new").exists()
    assert not (workspace / "new.jsonl").exists() and not (workspace / "new.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--world", "v18"], "git checkout 42d55759072f1b17bd58c146d57f91408596eebf -- src/w2s/toy/checkpoints/v18"),
    (["--world", "v99"], "unknown toy world version 'v99'"),
    (["--backend", "tgi"], "--backend must be hf or vllm"),
    (["--set", "no_equals_sign"], "KEY=VALUE"),
])
def test_demo_refused_before_its_run_directory_exists(cli, tmp_path, args, message):
    """A retired or unknown world, a wrong backend or override: exit 2, and no run directory
    (not even its lock file) is left behind."""
    res = cli("demo", "--quick", "--out", tmp_path / "run", *args)
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# settings that would train on nothing
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--epochs", 0], "--num-train-epochs: must be > 0"),
    (["--max-steps", -5], "--max-steps: must be >= 1"),
    (["--max-steps", 0, "--epochs", 0], "--max-steps: must be >= 1"),
    (["--lr", -1], "--learning-rate: must be > 0"),
    (["--max-length", 0], "--max-length: must be >= 1"),
    (["--lora", "--lora-alpha", 0], "--lora-alpha: must be > 0"),
    (["--extra", "no_equals_sign"], "--extra: expected KEY=VALUE"),
])
def test_train_refuses_settings_that_train_on_nothing(cli, tmp_path, flags, message):
    data = _sft(tmp_path / "sft.jsonl", 4)
    res = cli("train", "sft", "-m", TOY, "-d", data, "-o", tmp_path / "out", *flags)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_settings_ranges_reach_the_pipeline_config(tmp_path):
    from w2s.pipeline.config import ConfigError, config_from_dict

    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    raw = {"task": "gsm8k", "data": {k: str(tmp_path / f"{f}.jsonl") for k, f in
                                     (("gold", "gold"), ("unlabeled", "unl"), ("test", "test"))},
           "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}
    for section, train, message in (("strong", {"epochs": 0}, "strong.train.epochs: must be > 0"),
                                    ("stage2", {"learning_rate": -1}, "stage2.train.learning_rate: "),
                                    ("weak", {"max_steps": -5}, "weak.train.max_steps: ")):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({**raw, section: {**raw.get(section, {}), "train": train}})
    SFTSettings(epochs=0, max_steps=3)  # a step budget makes epochs irrelevant


def test_eval_limit_must_be_positive(cli, tmp_path):
    q = tmp_path / "q.jsonl"
    write_jsonl(q, [{"id": "1", "question": "What is 1+1?", "answer": "#### 2"}])
    res = cli("eval", "-t", "gsm8k", "-m", TOY, "-d", q, "--limit", -1, "-o", tmp_path / "m.json")
    assert res.exit_code == 2 and "--limit" in res.output
    assert list(tmp_path.iterdir()) == [q]


# ---------------------------------------------------------------------------------------------
# one huge record
# ---------------------------------------------------------------------------------------------
def test_huge_record_is_cut_before_tokenisation(tmp_path, peak_rss_probe):
    data = tmp_path / "huge.jsonl"
    rows = [{"id": str(i), "prompt": f"Q {i}?\nA:", "completion": f" {i} #### {i}"} for i in range(8)]
    rows.append({"id": "big", "prompt": "Q big?\nA:", "completion": " 1 + 2 = 3 and" * 1_500_000})  # 21 MB
    write_jsonl(data, rows)
    probe = peak_rss_probe + ("import runpy, sys; sys.argv = ['w2s'] + sys.argv[1:]; "
                              "runpy.run_module('w2s', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", probe, "train", "sft", "-m", str(TOY), "-d", str(data),
                           "-o", str(tmp_path / "out"), "--max-steps", "1", "--max-length", "64"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 of 9 records have a field longer than" in proc.stderr
    peak_mb = int(proc.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB (before the cut: about 5 GB for this record)"
    assert is_complete(tmp_path / "out") and read_lineage(tmp_path / "out")["data"]["n_records"] == 9


def test_launcher_that_writes_no_model_is_a_clear_failure(tmp_path):
    from w2s.training.launch import launch_job

    job = {"kind": "sft", "model": str(TOY), "data": str(_sft(tmp_path / "sft.jsonl", 4)),
           "out_dir": str(tmp_path / "out"), "settings": {"max_steps": 1}}
    with pytest.raises(RuntimeError, match=r"exited 0 but wrote no complete model .*`true -m w2s\.training\.launch "
                                           r".*job\.json` \(log: .*job\.log\)"):
        launch_job("true", job, tmp_path / "job.json")
    with pytest.raises(RuntimeError, match=r"failed with exit 1 under `false .*` \(log: .*job\.log\)"):
        launch_job("false", job, tmp_path / "job.json")
    assert (tmp_path / "job.log").exists()


def test_working_directory_is_not_an_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="current directory"):
        od.check_replaceable(Path("."))
    with pytest.raises(ValueError, match="current directory"):
        od.check_replaceable(tmp_path.parent)
    od.check_replaceable(tmp_path / "sub")  # below it is fine


@pytest.mark.parametrize("damage", ["no_tokenizer", "no_weights", "truncated_weights"])
def test_a_damaged_model_directory_is_one_line_naming_it(cli, tmp_path, damage):
    """A model dir without its tokenizer, without its weights, or with a cut safetensors file:
    a one-line error naming the directory, exit 2, no output file."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(TOY, model)
    if damage == "no_tokenizer":
        for f in model.glob("tokenizer*"):
            f.unlink()
    elif damage == "no_weights":
        (model / "model.safetensors").unlink()
    else:
        os.truncate(model / "model.safetensors", 100_000)
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "question": "What is 1 + 1?", "answer": "2"}\n')
    res = cli("generate", "-t", "toy", "-m", model, "-i", q, "-o", tmp_path / "g.jsonl", "-q")
    assert res.exit_code == 2, res.output
    assert "model" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "g.jsonl").exists()
