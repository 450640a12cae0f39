"""MATH: competition problems with LaTeX answers, graded by math-verify (via w2s.grading).

Format: prompt "Question: {problem}\nAnswer:"; the final answer is the last \\boxed{...}
(balanced braces, so \\boxed{\\frac{1}{2}} works), else the text after "The answer is:".
Extraction is linear in the response length (a 1 MB loop on \\boxed{ takes milliseconds).
Equivalence is symbolic (sets, intervals, tuples, degrees, \\text{}, \\dfrac), symmetric and
time-bounded per comparison and per task (the task's `GradingBudget`, spent by slow comparisons
and long or slow extractions, after which hard comparisons are strict strings and long
responses are not read, all reported): see `w2s.grading.math_equal`.
"""

from __future__ import annotations

import re
from typing import Sequence

from w2s.grading import (DEFAULT_BUDGET, DEFAULT_TIMEOUT, GradingBudget, last_boxed as _last_boxed,
                         last_nonempty, math_equal, math_equal_many)
from w2s.tasks.base import Task, register_task

_THE_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is:?\s*([^\n]*)")
#: Longest final answer kept (longer is a degenerate loop; grading would refuse it anyway).
MAX_ANSWER_CHARS = 1000


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} with balanced braces, or None. Linear in
    the text length (a 1 MB response costs milliseconds); an unclosed last box falls back to the
    previous closed one; a box longer than 10 * MAX_ANSWER_CHARS counts as unclosed."""
    return _last_boxed(text, window=10 * MAX_ANSWER_CHARS)


def _strip_answer_text(s: str) -> str:
    s = s.strip()
    if s.startswith("$") and s.count("$") >= 2:
        s = s[1:s.index("$", 1)]
    return s.strip().rstrip(".").strip().strip("$").strip()


@register_task
class MathTask(Task):
    name = "math"
    stop = ("\nQuestion:",)
    rename = {"problem": "question"}

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, budget: float = DEFAULT_BUDGET):
        self.timeout = float(timeout)
        self.budget = GradingBudget(float(budget))  # one per task: replace it to start a new run

    def find_answer(self, text: str) -> str:
        """The last \\boxed{...}, else the text after the last "The answer is"; ""."""
        text = self.clean_response(text)
        boxed = last_boxed(text)
        if boxed is None:
            found = last_nonempty(_THE_ANSWER_IS, text)
            boxed = _strip_answer_text(found) if found else ""
        return boxed if len(boxed) <= MAX_ANSWER_CHARS else ""

    def gold_answer(self, row: dict) -> str:
        if row.get("answer") is not None and str(row["answer"]).strip():
            return str(row["answer"]).strip()
        boxed = last_boxed(row.get("solution") or "")
        if boxed:
            return boxed
        raise KeyError("answer")

    def equivalent(self, a: str, b: str) -> bool:
        return math_equal(a, b, timeout=self.timeout, budget=self.budget)

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Batch form of `equivalent` (one worker round-trip); used to warm the cache."""
        return math_equal_many(pairs, timeout=self.timeout, budget=self.budget)
