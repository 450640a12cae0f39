"""Fold a LoRA adapter into its base model: a full model directory with lineage and DONE."""

from __future__ import annotations

import os
import time
from pathlib import Path

from w2s.io import check_output
from w2s.training import lineage as lin
from w2s.training import outdir as od
from w2s.training import trl_compat
from w2s.models import adapter_base, is_adapter_dir
from w2s.training.run import merge_into


def merge_adapter(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  base: str | os.PathLike | None = None) -> Path:
    """Merge the adapter in `adapter_dir` into its base (from adapter_config.json, or `base`)
    and save a loadable model directory to `out_dir` (safetensors + tokenizer + lineage + DONE)."""
    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not is_adapter_dir(adapter_dir):
        raise ValueError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
    base = str(base) if base is not None else adapter_base(adapter_dir)
    check_output(out, [adapter_dir], is_dir=True, models=[base])
    od.recover(out)
    od.check_replaceable(out)
    stage = od.fresh_stage(out, "merge")  # OUT keeps its old model until the new one is complete
    merge_into(adapter_dir, stage, base=base)
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
    lin.write_lineage(stage, lineage)
    lin.mark_done(stage)
    return od.publish(stage, out)
