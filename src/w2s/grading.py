"""Answer equivalence: exact numbers in pure Python, LaTeX through math-verify in a worker.

Two comparators, both symmetric and both with "" equal to nothing:

* `numbers_equal(a, b)` — GSM8K-style numeric answers. A small pure-Python parser
  (`parse_number`, exact `Fraction`s, length-capped) reads "$1,234.50", "18 dollars", "50%",
  "-7", "3/4", "2 1/2"; no sympy, no worker, microseconds per call. An answer is ONE number:
  "25 or 30", "25*2", "25^{99}", "25!" are not 25 (they are compared as text).
* `math_equal(a, b)` / `math_equal_many(pairs)` — MATH-style LaTeX answers. Cheap checks first
  (normalised strings, plain numbers); the rest goes to math-verify, which calls sympy on the
  text. sympy can run for ever or eat all memory on hostile input (`9^{9^{9^{9}}}`), and
  math-verify's own timeout relies on SIGALRM, which only works in the main thread. So
  parse+verify run in a persistent child process (`python -c ...`, started with subprocess so
  it also works from threads and from daemonic worker processes); the caller waits with a
  deadline and kills and restarts the child when one comparison overruns. Many comparisons
  share one round-trip, and results are cached. A `GradingBudget` bounds a whole grading run:
  once its slow comparisons have used up the budget, the rest are compared as strict strings
  and reported (a file of hostile rows costs the budget, not hours).

Both start from `canonical_text`: NFKC, Unicode format characters (bidi marks, zero-width
spaces) removed, every decimal digit as ASCII, so "２５", "٢٥", "𝟐𝟓" and "\u200f25" all read as
"25" in every task.

This is the ONLY module that imports math_verify (and only inside the child process). Nothing
here evaluates model text with eval/exec/sympify: the LaTeX goes through math-verify's
parser, guarded by `safe_for_sympy` (length, nesting and power-tower caps).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

# --------------------------------------------------------------------------- text

_SUPERSCRIPTS = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u207b]+")


def canonical_text(s: str) -> str:
    """The one Unicode rule for every task: superscripts as ^{...} (NFKC alone would turn
    "5²" into "52"), NFKC (full-width and math-bold digits, compatibility forms), format
    characters dropped (bidi marks U+200E/F, U+202A-E, U+2066-9, zero-width spaces, BOM),
    every decimal digit (Arabic-Indic, Devanagari, ...) as ASCII, fraction slash and minus
    sign as / and -."""
    s = str(s)
    if s.isascii():
        return s
    s = _SUPERSCRIPTS.sub(lambda m: "^{" + unicodedata.normalize("NFKC", m.group(0)) + "}", s)
    s = unicodedata.normalize("NFKC", s)
    out = []
    for c in s:
        if c.isascii():
            out.append(c)
        elif unicodedata.category(c) == "Cf":
            continue
        elif unicodedata.category(c) == "Nd":
            out.append(str(unicodedata.decimal(c)))
        else:
            out.append({"\u2044": "/", "\u2212": "-"}.get(c, c))
    return "".join(out)


# --------------------------------------------------------------------------- numbers

#: Longest answer text the numeric parser looks at; longer text is never a number.
MAX_NUMBER_TEXT = 200
#: Longest digit run accepted (a 10,000-digit "number" is a degenerate loop, not an answer).
MAX_DIGITS = 100

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CLOCK_OR_RATIO = re.compile(r"\d\s*:\s*\d")
#: Words that make "25 <word>" something other than 25 units ("25 or 30", "25 squared").
_NOT_UNITS = frozenset("or and to plus minus times divided over by squared cubed less more than "
                       "x e".split())
# The whole answer: [sign] [currency] [sign] number [%] [up to three unit words] [.]
_NUMBER = re.compile(
    r"(?P<sign>[-+]?)[ \t]*(?:[€£¥][ \t]*)?(?P<sign2>[-+]?)[ \t]*"  # $ is removed before
    r"(?:(?P<whole>[0-9]+)[ \t]+(?P<num>[0-9]+)[ \t]*/[ \t]*(?P<den>[0-9]+)"  # mixed number 2 1/2
    r"|(?P<a>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[ \t]*/[ \t]*(?P<b>[0-9]+(?:\.[0-9]+)?))?)"  # 4.20, .5, 3/4
    r"[ \t]*%?(?P<units>(?:[ \t]+[A-Za-z]+){0,3})[ \t]*\.?"
)


def parse_number(text: str) -> Fraction | None:
    """The number an answer states, exactly, or None when the answer is not ONE number.

    Currency signs, thousands separators, %, a trailing period and up to three unit words
    ("18 dollars", "3 square feet") are allowed; for "x = b" forms the right-hand side counts
    when the left has no digits. Anything else (a second number, an operator or symbol after
    the number: "25 or 30", "25*2", "25^{99}", "25!", "25 (approx)") is not a number, and
    is then compared as text, as the paper's string grader would.
    """
    if not isinstance(text, str):
        return None
    s = canonical_text(text).strip()
    if not s or len(s) > MAX_NUMBER_TEXT:
        return None
    s = (s.replace("\\$", "").replace("$", "").replace("\\%", "%")
         .replace("\\!", "").replace("{,}", ","))
    if "=" in s:
        lhs, s = s.rsplit("=", 1)
        if any(c.isdigit() for c in lhs):
            return None  # "48/2 = 24": several numbers
    s = _THOUSANDS.sub("", s.strip())
    if _CLOCK_OR_RATIO.search(s):
        return None  # "5:30" is a time (or a ratio), not 5: compare as text
    m = _NUMBER.fullmatch(s)
    if not m or (m.group("sign") and m.group("sign2")):
        return None
    if any(w.lower() in _NOT_UNITS for w in m.group("units").split()):
        return None
    if sum(c.isdigit() for c in m.group(0)) > MAX_DIGITS:
        return None
    sign = -1 if "-" in (m.group("sign"), m.group("sign2")) else 1
    try:
        if m.group("whole") is not None:
            den = int(m.group("den"))
            if den == 0:
                return None
            value = int(m.group("whole")) + Fraction(int(m.group("num")), den)
        else:
            value = Fraction(m.group("a"))
            if m.group("b") is not None:
                den = Fraction(m.group("b"))
                if den == 0:
                    return None
                value /= den
    except (ValueError, ZeroDivisionError):
        return None
    return sign * value


def normalize_text(s: str) -> str:
    """Canonical (see `canonical_text`), whitespace-collapsed, stripped, without trailing
    sentence punctuation."""
    return " ".join(canonical_text(s).split()).strip().rstrip(".").strip()


def numbers_equal(a: str, b: str) -> bool:
    """Numeric equivalence for GSM8K-style answers (exact: 4.20 == 4.2, 3/4 == 0.75).

    Falls back to normalised string equality when either side is not a number, which keeps
    the relation symmetric. "" equals nothing.
    """
    if not a or not b or not str(a).strip() or not str(b).strip():
        return False
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return x == y
    if x is not None or y is not None:
        return False
    na, nb = normalize_text(a), normalize_text(b)
    return bool(na) and na == nb


# --------------------------------------------------------------------------- LaTeX

#: Answers longer than this never reach sympy (compared as normalised strings only).
MAX_LATEX_CHARS = 400
MAX_BRACE_DEPTH = 12
MAX_EXPONENT_DEPTH = 2
MAX_FRAC_COUNT = 12
#: Wall-clock bound on one comparison (parse both sides, verify both ways) in the worker.
DEFAULT_TIMEOUT = 5.0
#: A comparison slower than this counts against a GradingBudget (normal ones take ~50 ms).
SLOW_COMPARISON = 1.0
#: Default seconds of slow comparisons per grading run (per MathTask).
DEFAULT_BUDGET = 60.0


@dataclass
class GradingBudget:
    """Bounds one grading run (a file, a `MathTask`): comparisons slower than SLOW_COMPARISON
    add their time to `spent`; once `spent` reaches `seconds`, every further comparison that
    would need math-verify is compared as strict strings (normalised LaTeX), i.e. False, and
    recorded in `skipped`. So a file of hostile rows costs about `seconds`, not hours. Slow and
    timed-out comparisons are recorded in `slow` as (a, b, seconds)."""

    seconds: float = DEFAULT_BUDGET
    spent: float = 0.0
    slow: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    warned: bool = False

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.seconds

    def summary(self, examples: int = 5) -> dict:
        return {"budget_s": self.seconds, "spent_s": round(self.spent, 2), "slow": len(self.slow),
                "skipped": len(self.skipped),
                "slow_examples": [[a[:80], b[:80]] for a, b, _ in self.slow[:examples]],
                "skipped_examples": [[a[:80], b[:80]] for a, b in self.skipped[:examples]]}

    def _note_skipped(self, a: str, b: str) -> None:
        self.skipped.append((a, b))
        if not self.warned:
            self.warned = True
            print(f"w2s grading: warning: slow math comparisons used up the grading budget of "
                  f"{self.seconds:g} s ({len(self.slow)} slow); the remaining hard comparisons are "
                  "compared as strict strings (counted as 'skipped' in the budget summary)",
                  file=sys.stderr, flush=True)

_LATEX_NOISE = [
    (re.compile(r"\\left|\\right|\\displaystyle|\\!|\\,|\\;|\\:|\\ |~"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\text\{\s*([^{}]*?)\s*\}|\\textbf\{\s*([^{}]*?)\s*\}|\\mbox\{\s*([^{}]*?)\s*\}"),
     lambda m: m.group(1) or m.group(2) or m.group(3) or ""),
    (re.compile(r"\^\s*\{?\\circ\}?|\^\s*\\circ|°"), ""),
    (re.compile(r"\s+"), ""),
]


def normalize_latex(s: str) -> str:
    """A cheap canonical form for exact comparison before sympy: no spacing commands,
    \\left/\\right, \\dfrac/\\tfrac, \\text{} wrappers, degree signs, $ or whitespace."""
    s = str(s).strip().strip("$").strip()
    for pattern, repl in _LATEX_NOISE:
        s = pattern.sub(repl, s)
    return s.rstrip(".")


# Text that looks like code never reaches a parser (belt and braces: nothing here evaluates it).
_CODE_LIKE = re.compile(r"import |lambda|__|def |\b(?:exec|eval)\s*\(")


def safe_for_sympy(s: str) -> bool:
    """Refuse input that could make sympy run away before it gets there: long text, deep
    nesting, power towers (9^{9^{9}}), many fractions, code."""
    if len(s) > MAX_LATEX_CHARS:
        return False
    if _CODE_LIKE.search(s):
        return False
    depth = max_depth = 0
    exp_stack: list[bool] = []  # per open brace: does it open an exponent?
    exp_depth = max_exp = 0
    prev = ""
    for c in s:
        if c == "{":
            is_exp = prev == "^"
            depth, exp_depth = depth + 1, exp_depth + is_exp
            exp_stack.append(is_exp)
            max_depth, max_exp = max(max_depth, depth), max(max_exp, exp_depth)
        elif c == "}":
            if not exp_stack:
                return False  # unbalanced
            depth -= 1
            exp_depth -= exp_stack.pop()
        if not c.isspace():
            prev = c
    if depth != 0 or max_depth > MAX_BRACE_DEPTH or max_exp > MAX_EXPONENT_DEPTH:
        return False
    if re.search(r"\^\s*[\w.]+\s*\^", s):
        return False  # a^b^c: a tower without braces
    if s.count("\\frac") + s.count("\\dfrac") > MAX_FRAC_COUNT:
        return False
    if re.search(r"\d{60,}", s):
        return False
    if "!" in s and ("^" in s or re.search(r"\d{4,}", s)):
        return False  # (10^{6})! : a factorial sympy would try to compute
    return True


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
        verdicts = _worker_pool().compare(unique, timeout, budget)
        decided = {}
        for (a, b), v in zip(unique, verdicts):
            if v is None:  # over budget: strict strings, which already differ; not cached
                budget._note_skipped(a, b)
                v = False
            else:
                _cache_put((a, b), v)
            decided[(a, b)] = v
        for i, a, b in todo:
            results[i] = decided[(a, b)]
    return [bool(r) for r in results]


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


_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

_CACHE: dict[tuple[str, str], bool] = {}
_CACHE_LIMIT = 200_000


def _cache_key(a: str, b: str) -> tuple[str, str]:
    a, b = str(a).strip(), str(b).strip()
    return (a, b) if a <= b else (b, a)


def _cache_put(key: tuple[str, str], value: bool) -> None:
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = value


# --------------------------------------------------------------------------- worker

class _Worker:
    """One child process running `_worker_main`, spoken to with JSON lines over pipes.

    Requests go in chunks small enough that neither pipe can fill up and deadlock. The
    worker answers item by item; each item gets `timeout` seconds from the previous answer,
    so a runaway item is detected, the child killed, the item answered False, and the rest
    of the chunk re-sent to a fresh child.
    """

    CHUNK = 64
    START_TIMEOUT = 120.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.lock = threading.Lock()
        self.pid_owner = os.getpid()
        self.restarts = 0

    def _start(self) -> None:
        src_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = src_root + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from w2s.grading import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, close_fds=True,
        )
        self.buf = b""
        line = self._read_line(time.monotonic() + self.START_TIMEOUT)
        if line != "ready":
            self._kill()
            raise RuntimeError("the math-verify worker process did not start "
                               "(is math-verify installed? try: python -c 'import math_verify')")

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - already gone
                pass
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except Exception:  # noqa: BLE001
                    pass
        self.proc = None
        self.buf = b""

    def _read_line(self, deadline: float) -> str | None:
        """One line from the child, or None on timeout or if the child died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None  # child exited
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def compare(self, pairs: list[tuple[str, str]], timeout: float,
                budget: GradingBudget | None = None) -> list[bool | None]:
        """Verdicts in order; None for a pair not compared because `budget` ran out."""
        with self.lock:
            out: list[bool | None] = []
            for start in range(0, len(pairs), self.CHUNK):
                out.extend(self._compare_chunk(pairs[start:start + self.CHUNK], timeout, budget))
            return out

    def _compare_chunk(self, pairs: list[tuple[str, str]], timeout: float,
                       budget: GradingBudget | None) -> list[bool | None]:
        results: list[bool | None] = []
        while len(results) < len(pairs):
            if budget is not None and budget.exhausted:
                if self.proc is not None:
                    self._kill()  # it may still be busy with items we no longer want
                return results + [None] * (len(pairs) - len(results))
            if self.proc is None or self.proc.poll() is not None:
                self._kill()
                self._start()
            pending = pairs[len(results):]
            try:
                payload = "".join(json.dumps([a, b]) + "\n" for a, b in pending)
                self.proc.stdin.write(payload.encode("utf-8"))
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                continue
            for a, b in pending:
                start = time.monotonic()
                line = self._read_line(start + timeout)
                elapsed = time.monotonic() - start
                if budget is not None and (line is None or elapsed >= SLOW_COMPARISON):
                    budget.spent += elapsed
                    budget.slow.append((a, b, round(elapsed, 2)))
                if line is None:  # overran (or died): this item is False, restart for the rest
                    results.append(False)
                    self._kill()
                    self.restarts += 1
                    break
                results.append(line.strip() == "1")
                if budget is not None and budget.exhausted:
                    break  # the rest of the chunk: decided above, without the worker
        return results


_POOL: _Worker | None = None
_POOL_LOCK = threading.Lock()


def _worker_pool() -> _Worker:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid_owner != os.getpid():  # a forked child needs its own
            _POOL = _Worker()
        return _POOL


@atexit.register
def _shutdown_worker() -> None:
    if _POOL is not None and _POOL.pid_owner == os.getpid():
        _POOL._kill()


def _worker_main() -> None:  # pragma: no cover - runs in the child process
    """The child: read [a, b] JSON lines, answer "1"/"0" lines. Runs math-verify in its main
    thread, so math-verify's own SIGALRM timeouts work here as a first line of defence."""
    import logging

    logging.disable(logging.CRITICAL)
    try:
        import resource

        limit = 4 << 30  # keep a runaway sympy from swapping the machine
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    from functools import lru_cache

    from math_verify import parse, verify

    @lru_cache(maxsize=50_000)
    def parsed(s: str):
        # Wrapped as a displayed answer so math-verify parses the whole string gold-style.
        return parse("$" + s + "$", parsing_timeout=2) or parse("\\boxed{" + s + "}", parsing_timeout=2)

    def equal(a: str, b: str) -> bool:
        pa, pb = parsed(a), parsed(b)
        if not pa or not pb:
            return False
        return bool(verify(pa, pb, timeout_seconds=2) or verify(pb, pa, timeout_seconds=2))

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            a, b = json.loads(line)
            ok = equal(str(a), str(b))
        except BaseException:  # noqa: BLE001 - any failure (incl. MemoryError) means "not shown equal"
            ok = False
        out.write("1\n" if ok else "0\n")
        out.flush()


def worker_restarts() -> int:
    """How many times a comparison overran and the worker was restarted (diagnostics)."""
    return _POOL.restarts if _POOL is not None else 0


def clear_cache() -> None:
    _CACHE.clear()


__all__ = [
    "parse_number", "numbers_equal", "normalize_text",
    "normalize_latex", "safe_for_sympy", "math_equal", "math_equal_many", "canonical_text",
    "GradingBudget", "DEFAULT_TIMEOUT", "DEFAULT_BUDGET", "worker_restarts", "clear_cache",
]
