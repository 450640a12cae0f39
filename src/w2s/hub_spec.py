"""`hf:NAME[:CONFIG][@SPLIT]`: how a run config names a dataset on the Hugging Face Hub."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubSpec:
    """`hf:NAME[:CONFIG][@SPLIT]`: a hub dataset, its configuration and split (None: not named)."""

    name: str
    config: str | None
    split: str | None


def parse_hub_spec(spec: str) -> HubSpec:
    """`hf:openai/gsm8k:main@test` -> HubSpec("openai/gsm8k", "main", "test")."""
    if not spec.startswith("hf:"):
        raise ValueError(f"{spec!r} is not a hub dataset (hf:NAME[:CONFIG][@SPLIT])")
    body, at, split = spec[3:].partition("@")
    name, _, config = body.partition(":")
    if not name or (at and not split) or any(c.isspace() for c in spec):
        raise ValueError(f"{spec!r}: expected hf:NAME[:CONFIG][@SPLIT], e.g. hf:openai/gsm8k:main@test")
    return HubSpec(name, config or None, split or None)
