"""`GradingBudget`: the time one grading run (one task object, i.e. one graded file) may spend on
work whose cost the model's text decides: answer extraction and slow math-verify comparisons."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

#: Default seconds per grading run (per task object).
DEFAULT_BUDGET = 60.0
#: A comparison slower than this counts against the budget (normal ones take ~50 ms).
SLOW_COMPARISON = 1.0
#: An extraction slower than this is spent from the budget and listed among the slow items.
SLOW_EXTRACTION = 0.1
#: A response longer than this is no real answer (MATH500 solutions: 3.4 KB at most): its
#: extraction time is spent from the budget, and once the budget is gone it is not read at all.
LONG_RESPONSE_CHARS = 64_000
#: How `slow` and `skipped` name an extraction (in place of the second answer of a comparison).
EXTRACTION = "(answer extraction)"


@dataclass
class GradingBudget:
    """Bounds one grading run (a file, a task object).

    Spent on it: the extraction of every response longer than LONG_RESPONSE_CHARS (linear, but a
    file of megabyte loops adds up), every extraction slower than SLOW_EXTRACTION and every
    comparison slower than SLOW_COMPARISON; ordinary rows spend nothing, so a long run on real
    data never degrades (`extraction_s` adds up all extraction time, for the report). Once `spent` reaches
    `seconds`, the budget is exhausted: a comparison that would need math-verify is compared as
    strict strings (normalised LaTeX), i.e. False, and a response longer than
    LONG_RESPONSE_CHARS is not read (no answer); both are recorded in `skipped`. So a file of
    hostile rows costs about `seconds`, not hours. Slow and timed-out items are recorded in
    `slow` as (a, b, seconds); for an extraction, b is EXTRACTION."""

    seconds: float = DEFAULT_BUDGET
    spent: float = 0.0
    extraction_s: float = 0.0
    slow: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    warned: bool = False

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.seconds

    def summary(self, examples: int = 5) -> dict:
        return {"budget_s": self.seconds, "spent_s": round(self.spent, 2),
                "extraction_s": round(self.extraction_s, 2), "slow": len(self.slow),
                "skipped": len(self.skipped),
                "slow_examples": [[a[:80], b[:80]] for a, b, _ in self.slow[:examples]],
                "skipped_examples": [[a[:80], b[:80]] for a, b in self.skipped[:examples]]}

    def extract(self, find: Callable[[str], str], response: str) -> str:
        """`find(response)`, timed (and spent when long or slow); "" (skipped) for a long
        response once the budget is exhausted."""
        long = len(response) > LONG_RESPONSE_CHARS
        if long and self.exhausted:
            self.note_skipped(response, EXTRACTION)
            return ""
        start = time.monotonic()
        answer = find(response)
        elapsed = time.monotonic() - start
        self.extraction_s += elapsed
        if long or elapsed >= SLOW_EXTRACTION:
            self.spent += elapsed
        if elapsed >= SLOW_EXTRACTION:
            self.slow.append((response[:80], EXTRACTION, round(elapsed, 2)))
        return answer

    def note_comparison(self, a: str, b: str, elapsed: float, timed_out: bool) -> None:
        """Spend a comparison that was slow (or timed out); fast ones are free."""
        if timed_out or elapsed >= SLOW_COMPARISON:
            self.spent += elapsed
            self.slow.append((a, b, round(elapsed, 2)))

    def note_skipped(self, a: str, b: str) -> None:
        self.skipped.append((a[:200], b[:200]))
        if not self.warned:
            self.warned = True
            print(f"w2s grading: warning: slow grading work used up the grading budget of "
                  f"{self.seconds:g} s ({len(self.slow)} slow); the remaining hard comparisons are "
                  "compared as strict strings and responses over "
                  f"{LONG_RESPONSE_CHARS} characters are not read (counted as 'skipped' in the "
                  "budget summary)", file=sys.stderr, flush=True)
