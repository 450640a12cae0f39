"""Training job kinds, and running one job described by a JSON file so that a caller can put any
launcher in front:

    accelerate launch --config_file examples/accelerate/ddp.yaml -m w2s.training.launch job.json

job.json: {"kind": "sft" | "preference" | "grpo" | "package.module:JOB_KIND", "model": str,
           "data": str, "out_dir": str, "settings": {...the kind's settings...}}

The pipeline uses this when its config sets `launcher` (multi-GPU training stages), and runs
training in-process otherwise; `w2s train ...` builds its options from the kinds' settings.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from w2s.registry import Registry
from w2s.training.grpo import train_grpo
from w2s.training.lineage import is_complete
from w2s.training.preference import train_preference
from w2s.training.settings import GRPOSettings, PreferenceSettings, SFTSettings, Settings, validate_settings
from w2s.training.sft import train_sft


@dataclass(frozen=True)
class JobKind:
    """A kind of training job: its settings type and its trainer
    `train(model, data, out_dir, settings, *, callbacks=()) -> Path`."""

    settings: type[Settings]
    train: Callable[..., Path]

    def __call__(self, model: str, data: Any, out_dir: str | Path, settings: dict | None = None,
                 key: str = "settings") -> Path:
        return self.train(model, data, out_dir, validate_settings(self.settings, settings or {}, key))


#: what a job's "kind" (and the pipeline's training stages) name; another package adds its own
#: with JOB_KINDS.register("name", JobKind(MySettings, my_train)) or names "package.module:OBJECT"
JOB_KINDS = Registry("training job kind", key="kind")
JOB_KINDS.register("sft", JobKind(SFTSettings, train_sft))
JOB_KINDS.register("preference", JobKind(PreferenceSettings, train_preference))
JOB_KINDS.register("grpo", JobKind(GRPOSettings, train_grpo))


def job_kind(job: dict) -> JobKind:
    kind = JOB_KINDS.get(job.get("kind"), "kind").obj
    if not isinstance(kind, JobKind):
        raise ValueError(f"kind: {job.get('kind')!r} is not a w2s.training.launch.JobKind")
    return kind


def job_settings(job: dict) -> Settings:
    """The job's settings, validated (errors name `settings.<key>`)."""
    return validate_settings(job_kind(job).settings, job.get("settings") or {}, "settings")


def run_job(job: dict) -> Path:
    return job_kind(job)(job["model"], job["data"], job["out_dir"], job.get("settings"))


def launch_job(launcher: str, job: dict, job_path: str | Path) -> Path:
    """Write `job` to `job_path` and run it under `launcher` (e.g. "accelerate launch ...").
    Its output goes to the console and to JOB.log beside `job_path`; any failure, including a
    launcher that exits 0 without writing a complete model, raises naming the command and the log."""
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


def accelerate_config(launcher: str | None, base_dir: Path) -> dict | None:
    """The accelerate config a launcher names (`--config_file`, beside the run config or from
    the current directory), with a `--num_processes` given on the command line over the file's."""
    words = (launcher or "").split()
    config: dict | None = None
    if "--config_file" in words and words.index("--config_file") + 1 < len(words):
        name = Path(words[words.index("--config_file") + 1])
        path = next((p for p in (name if name.is_absolute() else base_dir / name, name) if p.is_file()), None)
        config = (yaml.safe_load(path.read_text()) or {}) if path else None
    if "--num_processes" in words and words.index("--num_processes") + 1 < len(words):
        config = {**(config or {}), "num_processes": int(words[words.index("--num_processes") + 1])}
    return config
