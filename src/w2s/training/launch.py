"""Run one training job described by a JSON file, so a caller can put any launcher in front:

    accelerate launch --config_file examples/accelerate/ddp.yaml -m w2s.training.launch job.json

job.json: {"kind": "sft" | "preference" | "grpo", "model": str, "data": str, "out_dir": str,
           "settings": {...SFTSettings / PreferenceSettings / GRPOSettings fields...}}

The pipeline uses this when its config sets `launcher` (multi-GPU training stages), and runs
training in-process otherwise.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from w2s.training.settings import GRPOSettings, LoraSettings, PreferenceSettings, SFTSettings


def job_settings(job: dict):
    settings = dict(job.get("settings") or {})
    if isinstance(settings.get("lora"), dict):
        settings["lora"] = LoraSettings(**settings["lora"])
    cls = {"sft": SFTSettings, "preference": PreferenceSettings, "grpo": GRPOSettings}[job["kind"]]
    return cls(**settings)


def run_job(job: dict) -> Path:
    from w2s.training import train_preference, train_sft
    from w2s.training.grpo import train_grpo

    fn = {"sft": train_sft, "preference": train_preference, "grpo": train_grpo}[job["kind"]]
    return fn(job["model"], job["data"], job["out_dir"], job_settings(job))


def launch_job(launcher: str, job: dict, job_path: str | Path) -> Path:
    """Write `job` to `job_path` and run it under `launcher` (e.g. "accelerate launch ...").
    Its output goes to the console and to JOB.log beside `job_path`; any failure, including a
    launcher that exits 0 without writing a complete model, raises naming the command and the log."""
    from w2s.training.lineage import is_complete

    job_settings(job)  # fail fast, in this process, on a bad setting
    job_path = Path(job_path)
    job_path.write_text(json.dumps(job, indent=2))
    log_path = job_path.with_suffix(".log")
    cmd = shlex.split(launcher) + ["-m", "w2s.training.launch", str(job_path)]
    if cmd[0] in ("python", "python3"):
        cmd[0] = sys.executable
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):  # tee: console and log
            log.write(chunk)
            _echo(chunk)
        rc = proc.wait()
    where = f"`{shlex.join(cmd)}` (log: {log_path})"
    if rc != 0:
        raise RuntimeError(f"training job failed with exit {rc} under {where}")
    if not is_complete(job["out_dir"]):
        raise RuntimeError(f"training job exited 0 but wrote no complete model at {job['out_dir']} "
                           f"under {where}")
    return Path(job["out_dir"])


def _echo(chunk: bytes) -> None:
    if hasattr(sys.stdout, "buffer"):
        sys.stdout.buffer.write(chunk)
    else:  # a text-only stream (captured output)
        sys.stdout.write(chunk.decode("utf-8", "replace"))
    sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m w2s.training.launch JOB.json")
    run_job(json.loads(Path(sys.argv[1]).read_text()))
