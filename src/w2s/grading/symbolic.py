"""MATH-style answer equivalence: `math_equal` / `math_equal_many`.

Cheap checks first (normalised strings, plain numbers, `safe_for_sympy`); the rest goes to
math-verify in the bounded worker (`w2s.grading.worker`), many comparisons per round-trip, with
results cached. A `GradingBudget` bounds a whole grading run."""

from __future__ import annotations

import re
from typing import Sequence

from w2s.grading.budget import GradingBudget
from w2s.grading.latex import normalize_latex, safe_for_sympy
from w2s.grading.numbers import parse_number
from w2s.grading.text import canonical_text
from w2s.grading.worker import DEFAULT_TIMEOUT, worker_pool


def math_equal(a: str, b: str, timeout: float = DEFAULT_TIMEOUT, budget: GradingBudget | None = None) -> bool:
    """Symmetric, time-bounded equivalence of two LaTeX final answers."""
    return math_equal_many([(a, b)], timeout=timeout, budget=budget)[0]


def math_equal_many(pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT,
                    budget: GradingBudget | None = None) -> list[bool]:
    """`math_equal` for many pairs in one round-trip to the worker (much faster than one by
    one). Each comparison is bounded by `timeout` seconds; one that overruns is False. With a
    `budget`, the run as a whole is bounded too (see GradingBudget)."""
    results: list[bool | None] = []
    todo: list[tuple[int, str, str]] = []
    for i, (a, b) in enumerate(pairs):
        a, b = canonical_text(a or ""), canonical_text(b or "")
        quick = _quick_math_equal(a, b)
        if quick is None:
            key = _cache_key(a, b)
            quick = _CACHE.get(key)
            if quick is None:
                todo.append((i, key[0], key[1]))
        results.append(quick)
    if todo:
        unique = sorted({(a, b) for _, a, b in todo})
        verdicts = worker_pool().compare(unique, timeout, budget)
        decided = {}
        for (a, b), v in zip(unique, verdicts):
            if v is None:  # over budget: strict strings, which already differ; not cached
                budget.note_skipped(a, b)
                v = False
            else:
                _cache_put((a, b), v)
            decided[(a, b)] = v
        for i, a, b in todo:
            results[i] = decided[(a, b)]
    return [bool(r) for r in results]


_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _quick_math_equal(a: str, b: str) -> bool | None:
    """Decide without sympy when we can: empties, equal normal forms, two plain numbers,
    anything sympy must not see. None means "ask math-verify"."""
    a, b = str(a or "").strip(), str(b or "").strip()
    if not a or not b:
        return False
    na, nb = normalize_latex(a), normalize_latex(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    if _PLAIN_NUMBER.fullmatch(na) and _PLAIN_NUMBER.fullmatch(nb):
        return parse_number(na) == parse_number(nb)
    if not (safe_for_sympy(a) and safe_for_sympy(b)):
        return False
    return None


_CACHE: dict[tuple[str, str], bool] = {}
_CACHE_LIMIT = 200_000


def _cache_key(a: str, b: str) -> tuple[str, str]:
    a, b = str(a).strip(), str(b).strip()
    return (a, b) if a <= b else (b, a)


def _cache_put(key: tuple[str, str], value: bool) -> None:
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = value


def clear_cache() -> None:
    _CACHE.clear()
