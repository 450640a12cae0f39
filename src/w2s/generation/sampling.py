"""Sampling settings and the small pieces every backend shares: per-sample seeds, work
items, and cutting a response at its first stop string.

Seeds are derived from (seed, id, sample_index) only, so a sample does not change when the
batch around it changes (resume, different batch size, another process).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple


#: Backend options that change speed or placement, never the generated text: kept out of every
#: cache key (pipeline stages, evaluation), so changing them reuses finished generations.
SPEED_ONLY_OPTIONS = ("batch_size", "max_batch_tokens", "concurrency", "data_parallel", "chunk_size",
                      "kv_cache_gib", "gpu_memory_utilization")


class GenerationError(RuntimeError):
    """A generation backend failed in a way the user must act on (bad endpoint, missing extra)."""


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
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
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
