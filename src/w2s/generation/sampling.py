"""Sampling settings and the small pieces every backend shares: per-sample seeds, work
items, and cutting a response at its first stop string.

Seeds are derived from (seed, id, sample_index) only, so a sample does not change when the
batch around it changes (resume, different batch size, another process).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import NamedTuple


#: Backend options that change speed or placement, never the generated text: kept out of every
#: cache key (pipeline stages, evaluation), so changing them reuses finished generations.
SPEED_ONLY_OPTIONS = ("batch_size", "max_batch_tokens", "concurrency", "data_parallel", "chunk_size",
                      "kv_cache_gib", "gpu_memory_utilization")


class GenerationError(RuntimeError):
    """A generation backend failed in a way the user must act on (bad endpoint, missing extra)."""


def check_sampling(*, max_new_tokens: object = 1, temperature: object = 0.0, top_p: object = 1.0,
                   top_k: object = 0, n: object = 1, names: dict[str, str] | None = None) -> None:
    """The one sampling check of every entry point (SamplingConfig, the CLI, the run config, the
    server): finite numbers in range, whole counts. NaN passes `< 0` and inf is "positive", and
    both give silent garbage (identical degenerate samples, random tokens), so both are refused.
    `names` maps a field to the caller's spelling (`--temperature`, `stage2.temperature`)."""
    names = names or {}

    def refuse(field: str, rule: str, value: object) -> None:
        raise ValueError(f"{names.get(field, field)}: must be {rule}, got {value!r}")

    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def count(value: object, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not count(max_new_tokens, 1):
        refuse("max_new_tokens", "a whole number >= 1", max_new_tokens)
    if not (number(temperature) and temperature >= 0):
        refuse("temperature", "a finite number >= 0 (0 = greedy)", temperature)
    if not (number(top_p) and 0 < top_p <= 1):
        refuse("top_p", "a number in (0, 1]", top_p)
    if not count(top_k, 0):
        refuse("top_k", "a whole number >= 0 (0 = off)", top_k)
    if not count(n, 1):
        refuse("n", "a whole number >= 1", n)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. `max_new_tokens` has no default on purpose: a silent default is how
    runs end up truncated. temperature == 0 means greedy; top_k == 0 means no top-k."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stop: tuple[str, ...] = field(default=())
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        check_sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                       top_k=self.top_k, n=self.n)
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class WorkItem(NamedTuple):
    """One sample to generate: a prompt, which sample of it, and the seed for that sample."""

    id: str
    prompt: str
    sample_index: int
    seed: int


def derive_seed(seed: int, item_id: str, sample_index: int) -> int:
    """A 31-bit seed that depends only on (seed, id, sample_index) (fits every backend's API)."""
    digest = hashlib.sha256(f"{seed}\x1f{item_id}\x1f{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest occurrence of any stop string; returns (text, hit)."""
    cut = -1
    for s in stop:
        j = text.find(s)
        if j != -1 and (cut == -1 or j < cut):
            cut = j
    return (text, False) if cut == -1 else (text[:cut], True)


def model_label(model: str, adapter: str | None) -> str:
    """The `model` field of generation records: the model reference, plus the adapter if any."""
    return f"{model}+{adapter}" if adapter else str(model)
