"""How many torch CPU threads a run of small models should use, decided from what the machine
can give it now (the pipeline's `threads: 0`, the toy world's pretraining)."""

from __future__ import annotations


def _other_cpu_load(interval: float = 0.3) -> float | None:
    """Cores kept busy by other processes right now (/proc/stat over `interval` s; None elsewhere).
    The 1-minute load average lags: just after a previous job it still reads "busy"."""
    import os
    import time

    def sample():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1)


def default_threads() -> int:
    """Torch CPU threads for small models: all cores (at most 2) on an idle machine, 1 when it is
    busy (intra-op threads that wait on each other under contention run many times slower)."""
    import os

    cores = os.cpu_count() or 1
    if cores < 2:
        return 1
    load = _other_cpu_load()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    return 1 if load > 0.5 * cores - 0.25 else 2
