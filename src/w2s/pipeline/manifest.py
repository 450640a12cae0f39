"""A run's manifest (RUN/manifest.json: what ran, with which key, and what it produced) and the
cache arithmetic around it: a stage's key, its outputs' fingerprint, removing stale outputs.
`stage` arguments are `w2s.pipeline.dag.Stage`s (name, params, outputs are read)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from w2s.io import file_sha256, write_json


class ManifestError(ValueError):
    """RUN/manifest.json cannot be read; the message names the file and what to do."""


class Manifest:
    """run_dir/manifest.json: stage -> {key, status, outputs, fingerprint, seconds, ...}."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "manifest.json"
        self.data = {"stages": {}, "invocations": []}
        if self.path.exists():
            self.data = self._read()

    def _read(self) -> dict:
        fix = "restore it, or delete it to recompute every stage"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ManifestError(f"{self.path} is not UTF-8 text; {fix}") from None
        except json.JSONDecodeError as e:
            raise ManifestError(f"{self.path} is not valid JSON (line {e.lineno} col {e.colno}: {e.msg}); "
                                f"{fix}") from None
        if not (isinstance(data, dict) and isinstance(data.get("stages"), dict)
                and all(isinstance(v, dict) for v in data["stages"].values())):
            raise ManifestError(f"{self.path} is not a w2s manifest (expected an object with a 'stages' "
                                f"mapping); {fix}")
        if not isinstance(data.get("invocations"), list):
            data["invocations"] = []
        return data

    def entry(self, name: str) -> dict:
        return self.data["stages"].get(name, {})

    def set(self, name: str, **values) -> None:
        self.data["stages"].setdefault(name, {}).update(values)
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def stage_key(stage, dep_fingerprints: list[str]) -> str:
    """A stage's cache key: its name, its config slice and its dependencies' fingerprints."""
    return stable_hash({"stage": stage.name, "params": stage.params, "deps": dep_fingerprints})


def outputs_exist(run_dir: Path, stage) -> bool:
    return all((run_dir / o).exists() for o in stage.outputs)


def fingerprint_outputs(run_dir: Path, stage, key: str) -> str:
    paths = [run_dir / o for o in stage.outputs]
    if paths and all(p.is_file() for p in paths):
        return stable_hash([file_sha256(p) for p in paths])
    return key


def remove_outputs(run_dir: Path, stage) -> None:
    for o in stage.outputs:
        p = run_dir / o
        if p.is_dir() and not p.is_symlink():  # a link (models/m_rl) goes, never what it points to
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    work = run_dir / "work"
    if work.exists():
        for p in work.glob(f"{stage.name}-*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
