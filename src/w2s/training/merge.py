"""Fold a LoRA adapter into its base model: a full model directory with lineage and DONE."""

from __future__ import annotations

import os
import time
from pathlib import Path

from w2s.training import lineage as lin
from w2s.training import trl_compat
from w2s.training._runner import _merge_into, adapter_base, is_adapter_dir


def merge_adapter(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  base: str | os.PathLike | None = None) -> Path:
    """Merge the adapter in `adapter_dir` into its base (from adapter_config.json, or `base`)
    and save a loadable model directory to `out_dir` (safetensors + tokenizer + lineage + DONE)."""
    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not is_adapter_dir(adapter_dir):
        raise ValueError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
    if out.resolve() == adapter_dir.resolve():
        raise ValueError("out_dir must differ from adapter_dir")
    base = str(base) if base is not None else adapter_base(adapter_dir)
    if out.exists() and any(out.iterdir()) and not (out / lin.LINEAGE).exists() and not lin.is_complete(out):
        raise ValueError(f"{out} exists and is not a w2s model directory; refusing to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    lin.clear_done(out)
    _merge_into(adapter_dir, out, base=base)
    parent = lin.read_lineage(adapter_dir) or {}
    lineage = {
        "kind": "merge",
        "base_model": lin.describe_model(base),
        "adapter_dir": str(adapter_dir.resolve()),
        "adapter": False,
        "merged": True,
        "adapter_lineage": parent or None,
        "data": parent.get("data"),
        "config": parent.get("config"),
        "versions": trl_compat.versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    lin.write_lineage(out, lineage)
    lin.mark_done(out)
    return out
