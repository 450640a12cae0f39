"""Lineage and completeness of training output directories.

A training output directory holds a loadable model (or a LoRA adapter), its tokenizer,
`lineage.json` (what was trained from what, on which data, with which config) and, written
LAST, a `DONE` marker. Only a directory with `DONE` is complete; the pipeline relies on it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from w2s.io import file_sha256, records_sha256, write_json, write_text

LINEAGE = "lineage.json"
DONE = "DONE"


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True once the training run that writes `out_dir` has finished (DONE marker present)."""
    return (Path(out_dir) / DONE).is_file()


def mark_done(out_dir: str | os.PathLike) -> None:
    write_text(Path(out_dir) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def clear_done(out_dir: str | os.PathLike) -> None:
    p = Path(out_dir) / DONE
    if p.exists():
        p.unlink()


def read_lineage(model_dir: str | os.PathLike) -> dict | None:
    p = Path(model_dir) / LINEAGE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_lineage(out_dir: str | os.PathLike, lineage: dict) -> None:
    write_json(Path(out_dir) / LINEAGE, lineage)


def data_fingerprint(data: str | os.PathLike | list[dict], records: Iterable[dict] | None = None) -> dict[str, Any]:
    """{"path", "sha256", "n_records"} for a file, or {"records", "sha256", ...} for in-memory records."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        out: dict[str, Any] = {"path": str(p.resolve())}
        out["sha256"] = file_sha256(p) if p.is_file() else None
        if records is not None:
            out["n_records"] = len(list(records))
        if not p.is_file() and records is not None:
            out["sha256"] = records_sha256(records)
        return out
    recs = list(data)
    return {"path": None, "sha256": records_sha256(recs), "n_records": len(recs)}


def describe_model(model: str | os.PathLike) -> dict[str, Any]:
    """How lineage names a model: its path (resolved when local) and its own lineage, if any."""
    p = Path(model)
    if p.exists():
        lin = read_lineage(p)
        d: dict[str, Any] = {"path": str(p.resolve())}
        if lin is not None:
            d["kind"] = lin.get("kind")
            d["lineage"] = {k: lin[k] for k in ("kind", "base_model", "data", "created") if k in lin}
        return d
    return {"path": str(model)}
