"""Answer equivalence: exact numbers in pure Python, LaTeX through math-verify in a worker.

Two comparators, both symmetric and both with "" equal to nothing:

* `numbers_equal(a, b)` — GSM8K-style numeric answers. A small pure-Python parser
  (`parse_number`, exact `Fraction`s, length-capped) reads "$1,234.50", "18 dollars", "50%",
  "-7", "3/4", "2 1/2"; no sympy, no worker, microseconds per call.
* `math_equal(a, b)` / `math_equal_many(pairs)` — MATH-style LaTeX answers. Cheap checks first
  (normalised strings, plain numbers); the rest goes to math-verify, which calls sympy on the
  text. sympy can run for ever or eat all memory on hostile input (`9^{9^{9^{9}}}`), and
  math-verify's own timeout relies on SIGALRM, which only works in the main thread. So
  parse+verify run in a persistent child process (`python -c ...`, started with subprocess so
  it also works from threads and from daemonic worker processes); the caller waits with a
  deadline and kills and restarts the child when one comparison overruns. Many comparisons
  share one round-trip, and results are cached.

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
from fractions import Fraction
from pathlib import Path
from typing import Sequence

# --------------------------------------------------------------------------- numbers

#: Longest answer text the numeric parser looks at; longer text is never a number.
MAX_NUMBER_TEXT = 200
#: Longest digit run accepted (a 10,000-digit "number" is a degenerate loop, not an answer).
MAX_DIGITS = 100

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CLOCK_OR_RATIO = re.compile(r"\d\s*:\s*\d")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+]?)\s*"
    r"(?:(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)(?![\d.])"  # mixed number 2 1/2
    r"|(?P<a>\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*(?P<b>\d+(?:\.\d+)?))?)"  # 4.20, .5, 3/4
)


def parse_number(text: str) -> Fraction | None:
    """The number an answer states, exactly, or None.

    Currency signs, thousands separators, %, units and trailing words are ignored; for
    "a = b" forms the right-hand side counts. The FIRST number is the answer ("18 dollars
    and 0 cents" is 18), which is how GSM8K answers after "####" are written.
    """
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not s or len(s) > MAX_NUMBER_TEXT:
        return None
    s = (s.replace("\u2212", "-").replace("\\$", "").replace("$", "").replace("\\%", "%")
         .replace("\\!", "").replace("{,}", ","))
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    s = _THOUSANDS.sub("", s)
    if _CLOCK_OR_RATIO.search(s):
        return None  # "5:30" is a time (or a ratio), not 5: compare as text
    m = _NUMBER.search(s)
    if not m:
        return None
    if sum(c.isdigit() for c in m.group(0)) > MAX_DIGITS:
        return None
    sign = -1 if m.group("sign") == "-" else 1
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
    """Whitespace-collapsed, stripped, without trailing sentence punctuation."""
    return " ".join(str(s).split()).strip().rstrip(".").strip()


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


def format_number(x: Fraction) -> str:
    """A canonical string for a parsed number: integers plainly, else a short decimal."""
    if x.denominator == 1:
        return str(x.numerator)
    as_float = float(x)
    if Fraction(repr(as_float)) == x:
        return repr(as_float)
    return f"{x.numerator}/{x.denominator}"


# --------------------------------------------------------------------------- LaTeX

#: Answers longer than this never reach sympy (compared as normalised strings only).
MAX_LATEX_CHARS = 400
MAX_BRACE_DEPTH = 12
MAX_EXPONENT_DEPTH = 2
MAX_FRAC_COUNT = 12
#: Wall-clock bound on one comparison (parse both sides, verify both ways) in the worker.
DEFAULT_TIMEOUT = 5.0

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


def math_equal(a: str, b: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Symmetric, time-bounded equivalence of two LaTeX final answers."""
    return math_equal_many([(a, b)], timeout=timeout)[0]


def math_equal_many(pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT) -> list[bool]:
    """`math_equal` for many pairs in one round-trip to the worker (much faster than one by
    one). Each comparison is bounded by `timeout` seconds; one that overruns is False."""
    results: list[bool | None] = []
    todo: list[tuple[int, str, str]] = []
    for i, (a, b) in enumerate(pairs):
        quick = _quick_math_equal(a, b)
        if quick is None:
            key = _cache_key(a, b)
            quick = _CACHE.get(key)
            if quick is None:
                todo.append((i, key[0], key[1]))
        results.append(quick)
    if todo:
        unique = sorted({(a, b) for _, a, b in todo})
        verdicts = _worker_pool().compare(unique, timeout)
        for (a, b), v in zip(unique, verdicts):
            _cache_put((a, b), v)
        for i, a, b in todo:
            results[i] = _CACHE.get((a, b), False)
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

    def compare(self, pairs: list[tuple[str, str]], timeout: float) -> list[bool]:
        with self.lock:
            out: list[bool] = []
            for start in range(0, len(pairs), self.CHUNK):
                out.extend(self._compare_chunk(pairs[start:start + self.CHUNK], timeout))
            return out

    def _compare_chunk(self, pairs: list[tuple[str, str]], timeout: float) -> list[bool]:
        results: list[bool] = []
        while len(results) < len(pairs):
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
            for _ in pending:
                line = self._read_line(time.monotonic() + timeout)
                if line is None:  # overran (or died): this item is False, restart for the rest
                    results.append(False)
                    self._kill()
                    self.restarts += 1
                    break
                results.append(line.strip() == "1")
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
    "parse_number", "numbers_equal", "normalize_text", "format_number",
    "normalize_latex", "safe_for_sympy", "math_equal", "math_equal_many",
    "DEFAULT_TIMEOUT", "worker_restarts", "clear_cache",
]
