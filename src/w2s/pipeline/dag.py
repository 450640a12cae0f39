"""A small stage runner: a DAG of stages, a run directory, a manifest, caching and resume.

A stage's cache key hashes its name, the config slice it reads (`params`) and the
fingerprints of the stages it depends on. A stage whose key matches a completed manifest
entry (and whose outputs exist) is skipped. A stage that was interrupted keeps its partial
work under `work/` (generation files, training checkpoints) as long as its key is unchanged,
so rerunning resumes it; a changed key throws the stale partial work away.

Fingerprints: a stage whose outputs are all files is fingerprinted by their contents, so a
rerun that reproduces the same data does not invalidate what follows; other stages (models)
are fingerprinted by their key.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from w2s.pipeline.manifest import (Manifest, ManifestError, fingerprint_outputs, outputs_exist,  # noqa: F401
                                   remove_outputs, stable_hash, stage_key)

log = logging.getLogger("w2s.pipeline")


class StageFailed(RuntimeError):
    """A stage raised; finished stages stay cached, so fixing the cause and rerunning resumes."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage, self.cause = stage, cause
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}: {cause}")


@dataclass(frozen=True)
class Work:
    """What a stage computes, declared beside it (`w2s plan` and the progress ETA read it):
    whose model (`role`: weak | strong), over which questions (`split`: gold | unlabeled | test
    | dev, at most `limit` of them), `per_question` generations (generate / eval: greedy plus
    samples) or training records (train: an upper bound, e.g. 2 for hybrid), `shots`
    demonstrations per prompt, and a train stage's job kind and settings (`job`, `train`)."""

    role: str
    split: str
    per_question: float = 1
    shots: int = 0
    job: str | None = None
    train: dict | None = None
    limit: int | None = None


@dataclass
class Stage:
    name: str
    fn: Callable[["StageContext"], dict | None]
    deps: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)   # paths relative to the run directory
    kind: str = "data"                                  # data | generate | train | eval | report
    always: bool = False                                # rerun every time (the report)
    work: Work | None = None                            # what it computes (None: nothing to speak of)
    #: may run side by side with another such stage, each in a forked one-thread process (a leaf
    #: whose only effect is its files: the hf evaluations on CPU)
    parallel: bool = False


@dataclass
class StageContext:
    stage: Stage
    run_dir: Path
    key: str

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    def work_path(self, tag: str = "", suffix: str = ".jsonl") -> Path:
        """A scratch path tied to this stage AND its key: partial work survives a crash but
        never leaks into a run with different inputs."""
        p = self.run_dir / "work" / f"{self.stage.name}-{self.key[:16]}{tag}{suffix}"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def _dep_fingerprints(stage: Stage, fingerprints: dict[str, str], manifest: Manifest,
                      required: bool) -> list[str] | None:
    """Fingerprints of a stage's dependencies, from this invocation or the manifest. None when
    one has never completed (an error if the stage itself must run)."""
    out = []
    for d in stage.deps:
        if d not in fingerprints:
            prev = manifest.entry(d)
            if prev.get("status") != "done":
                if required:
                    raise RuntimeError(f"stage {stage.name!r} needs {d!r}, which has not run "
                                       f"(run without --only, or with --until {stage.name})")
                return None
            fingerprints[d] = prev["fingerprint"]
        out.append(fingerprints[d])
    return out


def select_stages(stages: list[Stage], only: list[str] | None = None,
                  until: str | None = None) -> set[str]:
    names = {s.name for s in stages}
    by_name = {s.name: s for s in stages}
    for n in (only or []) + ([until] if until else []):
        if n not in names:
            raise ValueError(f"unknown stage {n!r}; stages: {', '.join(s.name for s in stages)}")
    if only:
        return set(only)
    if until:
        wanted, todo = set(), [until]
        while todo:
            n = todo.pop()
            if n not in wanted:
                wanted.add(n)
                todo.extend(by_name[n].deps)
        return wanted
    return names


def run_stages(stages: list[Stage], run_dir: Path, *, only: list[str] | None = None,
               until: str | None = None, force: list[str] | None = None,
               on_event: Callable[[str, Stage, dict], None] | None = None,
               workers: int = 1, weight: Callable[[Stage], float] | None = None) -> Manifest:
    """Run `stages` (already in topological order) in `run_dir`.

    Stages that need no work (cached, not wanted) are settled as soon as their dependencies are.
    Every other stage runs in this process, in topological order. workers > 1: stages marked
    `parallel` (leaves) run as soon as they are ready, up to `workers` at a time, each in a forked
    process with one torch thread, and the main line runs here on the threads the children leave
    (both cores busy; on the toy models one thread gives the same numbers as two): the leaves a
    main-line stage waits on first, then the heaviest (`weight`). The manifest is written by this
    process only."""
    run_dir.mkdir(parents=True, exist_ok=True)
    names = {s.name for s in stages}
    for n in force or []:
        if n not in names:
            raise ValueError(f"unknown stage {n!r} in --force")
    run = _Run(stages, run_dir, select_stages(stages, only, until), set(force or []),
               on_event or (lambda *a: None), workers, weight)
    try:
        while run.pending or run.side.running:
            run.step()
    finally:
        run.side.stop()
    run.invocation["finished"] = time.time()
    run.manifest.save()
    return run.manifest


class _Run:
    """One invocation of `run_stages`: what is pending, what must run (by key), what has settled
    (fingerprints), and one scheduling step at a time."""

    def __init__(self, stages: list[Stage], run_dir: Path, wanted: set[str], force: set[str], emit: Callable,
                 workers: int, weight: Callable[[Stage], float] | None):
        self.stages, self.run_dir, self.wanted, self.force, self.emit = stages, run_dir, wanted, force, emit
        self.workers, self.weight = workers, weight
        self.manifest = Manifest(run_dir)
        self.invocation: dict = {"started": time.time(), "ran": [], "cached": []}
        self.manifest.data["invocations"].append(self.invocation)
        self.index = {s.name: i for i, s in enumerate(stages)}
        self.depended_on = {d for s in stages for d in s.deps}
        self.pending, self.side = list(stages), _SideBySide(run_dir, self.manifest, emit)
        self.fingerprints: dict[str, str] = {}
        self.keys: dict[str, str] = {}  # stages that must run, by their key

    def info(self, stage: Stage) -> dict:
        return {"index": self.index[stage.name], "total": len(self.stages)}

    def decide(self, stage: Stage) -> str | None:
        """None when nothing is left to do for the stage; else its key (the stage must run)."""
        dep_prints = _dep_fingerprints(stage, self.fingerprints, self.manifest, required=stage.name in self.wanted)
        if dep_prints is None:
            return None  # not wanted, and an upstream stage has not run: nothing to know here
        key = stage_key(stage, dep_prints)
        prev = self.manifest.entry(stage.name)
        done = prev.get("status") == "done" and prev.get("key") == key and outputs_exist(self.run_dir, stage)
        if stage.name not in self.wanted:
            if done:
                self.fingerprints[stage.name] = prev["fingerprint"]
            return None
        if done and stage.name not in self.force and not stage.always:
            self.fingerprints[stage.name] = prev["fingerprint"]
            self.invocation["cached"].append(stage.name)
            self.emit("cached", stage, {**self.info(stage), **prev})
            return None
        return key

    def ran(self, ended: tuple[str, str]) -> None:
        name, self.fingerprints[name] = ended
        self.invocation["ran"].append(name)

    def step(self) -> None:
        """Collect the children that ended, settle one stage that needs no work, or make one move:
        wait for a child, start a leaf in a child, or run a stage here."""
        while self.side.running and (ended := self.side.wait_one(timeout=0)) is not None:
            self.ran(ended)
        blocked = {s.name for s in self.pending} | set(self.side.running)
        ready = [s for s in self.pending if not any(d in blocked for d in s.deps)]
        for stage in ready:  # what needs no work (cached, not wanted) is settled at once
            if stage.name not in self.keys:
                key = self.decide(stage)
                if key is None:
                    self.pending.remove(stage)
                    return  # one at a time: settled in topological order
                self.keys[stage.name] = key
        parallel = self.workers > 1
        # first the leaves a main-line stage waits on that others wait on in turn (m_rl, not the
        # report, which waits on everything), then the heaviest
        awaited = {d for s in self.pending if not s.parallel and s.name in self.depended_on for d in s.deps}
        leaves = sorted((s for s in ready if s.parallel and parallel),
                        key=lambda s: (s.name not in awaited, -(self.weight(s) if self.weight else 0.0)))
        move, stage = _next_move([s for s in ready if not (s.parallel and parallel)], leaves,
                                 len(self.side.running), self.workers)
        if move == "wait":
            self.ran(self.side.wait_one())  # type: ignore[arg-type]  (no timeout: a child ends)
            return
        self.pending.remove(stage)
        forced, key = stage.name in self.force, self.keys[stage.name]
        if move == "start":
            self.side.start(stage, key, forced, self.info(stage))
            return
        # here: beside the children on the threads they leave, or alone with all of them
        running = len(self.side.running)
        with _torch_threads(self.workers - running) if running else contextlib.nullcontext():
            self.ran((stage.name, _run_stage(stage, self.run_dir, self.manifest, key, forced, self.info(stage),
                                             self.emit)))
        self.manifest.save()


def _next_move(main: list[Stage], leaves: list[Stage], running: int, workers: int) -> tuple[str, Stage | None]:
    """The scheduler's next move: "wait" for a child, "start" a leaf in a child, or run a stage
    "here" (the main line's next stage first)."""
    if running:
        if running >= workers or not (main or leaves):
            return "wait", None
        return ("here", main[0]) if main else ("start", leaves[0])
    if leaves and (main or len(leaves) > 1):  # a leaf beside the main line, or beside another leaf
        return "start", leaves[0]
    return "here", (main or leaves)[0]


def _run_stage(stage: Stage, run_dir: Path, manifest: Manifest, key: str, forced: bool, info: dict,
               emit: Callable) -> str:
    """Run one stage whose outputs are missing or stale; its fingerprint once done."""
    _begin(stage, run_dir, manifest, key, forced, info, emit)
    t0 = time.time()
    try:
        result = stage.fn(StageContext(stage, run_dir, key)) or {}
    except BaseException as e:
        log.exception("stage %s failed", stage.name)
        _failed(stage, manifest, info, emit, e)
        if isinstance(e, Exception):
            raise StageFailed(stage.name, e) from e
        raise
    return _finish(stage, run_dir, manifest, key, info, emit, result, time.time() - t0)


def _begin(stage: Stage, run_dir: Path, manifest: Manifest, key: str, forced: bool, info: dict,
           emit: Callable) -> None:
    prev = manifest.entry(stage.name)
    if prev.get("key") != key or forced:
        remove_outputs(run_dir, stage)  # stale: different inputs, or forced fresh
    info["resumed"] = prev.get("status") == "running" and prev.get("key") == key
    attempts = prev.get("attempts", 0) + 1 if prev.get("key") == key else 1
    manifest.set(stage.name, key=key, status="running", outputs=stage.outputs, kind=stage.kind,
                 deps=stage.deps, params=stage.params, started=time.time(), attempts=attempts)
    emit("start", stage, info)


def _failed(stage: Stage, manifest: Manifest, info: dict, emit: Callable, e: BaseException) -> None:
    """An exception is a failure; Ctrl-C or a kill leaves the stage "running" (resumable)."""
    failed = isinstance(e, Exception)
    manifest.set(stage.name, status="failed" if failed else "running", error=f"{type(e).__name__}: {e}")
    emit("failed" if failed else "interrupted", stage, {**info, "error": str(e)})


def _finish(stage: Stage, run_dir: Path, manifest: Manifest, key: str, info: dict, emit: Callable,
            result: dict, seconds: float) -> str:
    missing = [o for o in stage.outputs if not (run_dir / o).exists()]
    if missing:
        manifest.set(stage.name, status="failed", error=f"outputs missing: {missing}")
        raise RuntimeError(f"stage {stage.name!r} did not write {missing}")
    fingerprint = fingerprint_outputs(run_dir, stage, key)
    manifest.set(stage.name, status="done", fingerprint=fingerprint, seconds=round(seconds, 3),
                 finished=time.time(), resumed=info["resumed"], info=result, error=None)
    emit("done", stage, {**info, "seconds": seconds, "result": result})
    return fingerprint


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _SideBySide:
    """Stages running in forked children, one torch thread each. A child runs only the stage's
    function, with its output in RUN/work/STAGE.log; this process keeps the manifest."""

    def __init__(self, run_dir: Path, manifest: Manifest, emit: Callable):
        self.run_dir, self.manifest, self.emit = run_dir, manifest, emit
        self.running: dict[str, tuple] = {}  # name -> (process, connection, stage, key, info, t0)

    def start(self, stage: Stage, key: str, forced: bool, info: dict) -> None:
        import multiprocessing

        _begin(stage, self.run_dir, self.manifest, key, forced, info, self.emit)
        receive, send = multiprocessing.Pipe(duplex=False)
        out = self.run_dir / "work" / f"{stage.name}.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        process = multiprocessing.get_context("fork").Process(
            target=_child, args=(send, stage, self.run_dir, key, out), name=f"w2s-{stage.name}", daemon=True)
        process.start()
        send.close()
        self.running[stage.name] = (process, receive, stage, key, info, time.time())

    def wait_one(self, timeout: float | None = None) -> tuple[str, str] | None:
        """Wait for a child to end; (its stage, fingerprint), None when none ended within `timeout`
        seconds, or StageFailed once the others end."""
        from multiprocessing.connection import wait

        ended = wait([entry[0].sentinel for entry in self.running.values()], timeout)
        if not ended:
            return None
        name = next(n for n, entry in self.running.items() if entry[0].sentinel in ended)
        process, receive, stage, key, info, t0 = self.running.pop(name)
        outcome = receive.recv() if receive.poll() else ("error", "RuntimeError",
                                                         f"the process ended with exit code {process.exitcode}")
        process.join()
        receive.close()
        if outcome[0] == "ok":  # the child's own seconds: it may have ended a while before this look
            return name, _finish(stage, self.run_dir, self.manifest, key, info, self.emit, outcome[1], outcome[2])
        error = RuntimeError(f"{outcome[1]}: {outcome[2]} (see {self.run_dir / 'work' / (name + '.log')})")
        log.error("stage %s failed: %s", name, error)
        _failed(stage, self.manifest, info, self.emit, error)
        while self.running:  # the others finish their work (their files stay resumable)
            try:
                self.wait_one()
            except StageFailed:
                pass
        raise StageFailed(name, error)

    def stop(self) -> None:
        """On an interruption: children are ended; their stages stay "running" (resumable)."""
        for process, receive, stage, key, info, t0 in self.running.values():
            process.terminate()
            process.join()
            _failed(stage, self.manifest, info, self.emit, KeyboardInterrupt("interrupted"))
        self.running.clear()


def _child(send, stage: Stage, run_dir: Path, key: str, out: Path) -> None:
    import os
    import traceback

    code = 0
    try:
        sys.stdout = sys.stderr = open(out, "a", buffering=1)  # progress bars and tracebacks, not the terminal
        os.dup2(sys.stdout.fileno(), 1)
        os.dup2(sys.stdout.fileno(), 2)
        import torch

        torch.set_num_threads(1)
        t0 = time.time()
        result = stage.fn(StageContext(stage, run_dir, key)) or {}
        send.send(("ok", result, time.time() - t0))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which decides
        traceback.print_exc()
        send.send(("error", type(e).__name__, str(e)))
        code = 1
    finally:
        send.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no atexit handlers of the parent's (its lock, its log handlers) in the child
