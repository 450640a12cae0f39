"""One writer per run directory: an advisory lock on RUN/.lock.

The kernel holds the lock (fcntl.flock) for as long as the holder's file is open, so a killed
holder releases it by itself; the file's contents (pid, host, start time, command) only name
the holder in messages. A clean exit empties the file; contents left behind by a process that
no longer holds the lock mean it died, and the next run says it takes that stale lock over.

    with run_lock(run_dir, "w2s run cfg.yaml"):
        ...   # another process on run_dir gets RunLocked at once
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"

#: run directories this process holds (resolved): `w2s demo` locks before writing its data,
#: then the pipeline it calls finds the lock already its own.
_held: set[Path] = set()


class RunLocked(ValueError):
    """Another live process holds the run directory."""


def _describe(info: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) \
        if isinstance(info.get("started"), (int, float)) else "?"
    cmd = f", {info['command']!r}" if info.get("command") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {since}{cmd}"


def _read_info(f) -> dict:
    f.seek(0)
    text = f.read()
    try:
        info = json.loads(text) if text.strip() else {}
    except ValueError:
        info = {"pid": "?", "note": "unreadable lock file"}
    return info if isinstance(info, dict) else {}


def _this_command() -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return " ".join(["w2s" if prog in ("__main__.py", "w2s") else prog, *sys.argv[1:]])


@contextmanager
def run_lock(run_dir: str | os.PathLike, command: str | None = None):
    """Hold RUN/.lock for the duration of the block; RunLocked (one line naming the holder) if
    another process holds it. Creates `run_dir` if needed; writes nothing else when refused."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:  # re-entered by the same process (the demo, then its pipeline)
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # "a+": create, never truncate
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_info(f))
            raise RunLocked(f"{run_dir} is in use by another run ({holder}); wait for it to finish "
                            "or stop it, or use another --out") from None
        stale = _read_info(f)
        if stale:  # always said (--quiet included): a run died here, mid-way
            print(f"{run_dir}: taking over a stale lock from {_describe(stale)} (that process is gone)",
                  file=sys.stderr, flush=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": command or _this_command()}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(me) + "\n")
        f.flush()
        os.fsync(f.fileno())
        _held.add(run_dir)
        try:
            yield
        finally:
            _held.discard(run_dir)
            # Empty, never delete: deleting would let a waiter lock the unlinked file while a
            # newcomer locks a fresh one (two holders).
            f.seek(0)
            f.truncate()
            f.flush()
    finally:
        f.close()  # releases the flock
