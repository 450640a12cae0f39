"""Answer equivalence: exact numbers in pure Python, LaTeX through math-verify in a worker.

Two comparators, both symmetric and both with "" equal to nothing:

* `numbers_equal(a, b)` (`numbers.py`): GSM8K-style numeric answers. A small pure-Python parser
  (`parse_number`, exact `Fraction`s, length-capped) reads "$1,234.50", "18 dollars", "50%",
  "-7", "3/4", "2 1/2"; no sympy, no worker, microseconds per call. An answer is ONE number:
  "25 or 30", "25*2", "25^{99}", "25!" are not 25 (they are compared as text).
* `math_equal(a, b)` / `math_equal_many(pairs)` (`symbolic.py`): MATH-style LaTeX answers.
  Cheap checks first (`latex.py`: normalised strings, plain numbers, `safe_for_sympy`'s length,
  nesting and power-tower caps); the rest goes to math-verify in a persistent child process
  (`worker.py`) that the caller waits on with a deadline and kills and restarts when one
  comparison overruns. Many comparisons share one round-trip, and results are cached.

A `GradingBudget` (`budget.py`) bounds a whole grading run (a task object, i.e. a file): answer
extraction and slow comparisons spend it; once it is spent, the rest are compared as strict
strings, long responses are not read, and both are reported (a file of hostile rows costs the
budget, not hours).

Everything starts from `canonical_text` (`text.py`): NFKC, Unicode format characters (bidi
marks, zero-width spaces) removed, every decimal digit as ASCII, so "２５", "٢٥", "𝟐𝟓" and
"\u200f25" all read as "25" in every task. `text.py` also holds the linear answer-string helpers
(`last_boxed`, `last_match`, `last_nonempty`) the tasks extract with.

This package is the ONLY code that imports math_verify (and only inside the child process).
Nothing here evaluates model text with eval/exec/sympify.
"""

from w2s.grading.budget import DEFAULT_BUDGET, GradingBudget
from w2s.grading.latex import normalize_latex, safe_for_sympy
from w2s.grading.numbers import numbers_equal, parse_number
from w2s.grading.symbolic import clear_cache, math_equal, math_equal_many
from w2s.grading.text import canonical_text, last_boxed, last_match, last_nonempty, normalize_text
from w2s.grading.worker import DEFAULT_TIMEOUT, worker_restarts

__all__ = [
    "parse_number", "numbers_equal", "normalize_text",
    "normalize_latex", "safe_for_sympy", "math_equal", "math_equal_many", "canonical_text",
    "GradingBudget", "DEFAULT_TIMEOUT", "DEFAULT_BUDGET", "worker_restarts", "clear_cache",
    "last_boxed", "last_match", "last_nonempty",
]
