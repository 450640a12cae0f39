"""The time-bounded worker around math-verify.

sympy can run for ever or eat all memory on hostile input, and math-verify's own timeout relies
on SIGALRM, which only works in the main thread. So parse+verify run in a persistent child
process (`python -c ...`, started with subprocess so it also works from threads and from
daemonic worker processes); the caller waits with a deadline per comparison and kills and
restarts the child when one overruns. This is the ONLY place math_verify is imported, and only
in the child.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from w2s.grading.budget import GradingBudget

#: Wall-clock bound on one comparison (parse both sides, verify both ways) in the worker.
DEFAULT_TIMEOUT = 5.0


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
        src_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = src_root + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from w2s.grading.worker import worker_main; worker_main()"],
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
                if budget is not None:
                    budget.note_comparison(a, b, elapsed, timed_out=line is None)
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


def worker_pool() -> _Worker:
    """The worker of this process (a forked child starts its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid_owner != os.getpid():  # a forked child needs its own
            _POOL = _Worker()
        return _POOL


@atexit.register
def _shutdown_worker() -> None:
    if _POOL is not None and _POOL.pid_owner == os.getpid():
        _POOL._kill()


def worker_main() -> None:  # pragma: no cover - runs in the child process
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
