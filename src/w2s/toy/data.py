"""The toy world's splits on disk: train_1 / train_2 / test.jsonl and world.json, kept apart
from the pretraining corpus (so `world` stays a pure generator and `pretrain` can import it)."""

from __future__ import annotations

from pathlib import Path

from w2s.io import write_json, write_jsonl
from w2s.toy.pretrain import corpus_signatures
from w2s.toy.world import DEFAULT_SIZES, WorldConfig, make_splits, world_info


def write_splits(out_dir, seed: int = 0, sizes: dict[str, int] | None = None, config: WorldConfig | None = None,
                 decontaminate: bool = True) -> dict:
    """Write train_1/train_2/test.jsonl and world.json (written last: its presence means the data
    is complete) to `out_dir`; returns the world.json contents. With `decontaminate`, no split
    holds a question (text or step list) of the world version's shipped models' pretraining corpus
    (seed 0)."""
    cfg = config or WorldConfig()
    exclude = corpus_signatures(seed=0, world=cfg.version) if decontaminate else None
    sz = {**DEFAULT_SIZES, **(sizes or {})}
    for name, n in sz.items():  # a negative count would write an empty split and report success
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"size of split {name!r} must be a whole number >= 0, got {n!r}")
    out_dir = Path(out_dir)
    for name, rows in make_splits(seed, sz, cfg, exclude=exclude).items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    info = world_info(seed, sz, cfg, decontaminate)
    write_json(out_dir / "world.json", info)
    return info
