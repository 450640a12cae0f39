"""`w2s run`: the whole method (Stages I-III) with every baseline, cached and resumable.

    run_pipeline("examples/tiny_cpu.yaml", "runs/tiny")   # the experiment in one call

The run directory holds config.yaml (resolved), manifest.json, data/, models/, eval/,
metrics.json, report.md, report.html and log.txt.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

from w2s import tracking
from w2s.generation import keep_engines
from w2s.io import write_json, write_text
from w2s.pipeline.config import ConfigError, RunConfig, load_config, to_dict  # noqa: F401
from w2s.pipeline.dag import Manifest, Stage, run_stages, stage_key
from w2s.pipeline.parts import build
from w2s.pipeline.lock import RunLocked, run_lock  # noqa: F401
from w2s.plan import Plan, check_disk, measure_flops, plan_record, plan_run, plan_summary
from w2s.threads import default_threads

log = logging.getLogger("w2s.pipeline")


def _attach_log_file(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("w2s")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _quiet_libraries() -> None:
    """Our per-stage lines replace the libraries' own progress bars and info chatter."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class ProgressPrinter:
    """One line per stage with elapsed time and an ETA from the work left: each remaining stage's
    planned arithmetic (`w2s.plan`) at the rate this run has measured for its kind (training or
    generation), so a long stage ahead is not estimated as the average of short ones."""

    def __init__(self, stages: list[Stage], quiet: bool = False, plan: Plan | None = None):
        self.quiet = quiet
        self.total = len(stages)
        self.t0 = time.time()
        self.kinds = {s.name: s.kind for s in stages}
        self.flops = {s.stage: s.flops for s in plan.stages} if plan else {}
        self.ran: dict[str, list[tuple[float, float]]] = {}   # kind -> [(flops, seconds)]
        self.remaining = {s.name for s in stages}
        self.running: dict[str, int] = {}  # running stage -> most stages running beside it (itself included)

    def eta(self) -> float:
        """Seconds left: the remaining stages' arithmetic at the rate measured for their kind,
        else the mean time of the stages of their kind run so far, else of all."""
        done = [x for runs in self.ran.values() for x in runs]
        overall = sum(s for _, s in done) / len(done) if done else 0.0
        left = 0.0
        for name in self.remaining:
            runs, flops = self.ran.get(self.kinds[name], []), self.flops.get(name, 0.0)
            done_flops, secs = sum(f for f, _ in runs), sum(s for _, s in runs)
            if flops and done_flops:
                left += flops / (done_flops / max(secs, 1e-9))
            else:
                left += secs / len(runs) if runs else overall
        return left

    def __call__(self, event: str, stage: Stage, info: dict) -> None:
        n = info.get("index", 0) + 1
        prefix = f"[{n:>2}/{self.total}] {stage.name:<22}"
        if event == "cached":
            self.remaining.discard(stage.name)
            msg = f"{prefix} cached ({info.get('seconds', 0):.1f}s when it ran)"
        elif event == "start":
            self.running[stage.name] = 1
            for name in self.running:  # the most stages that shared the machine during each one
                self.running[name] = max(self.running[name], len(self.running))
            msg = f"{prefix} running{' (resuming partial work)' if info.get('resumed') else ''}..."
        elif event == "done":
            self.remaining.discard(stage.name)
            # side by side, a stage had a share of the machine: its seconds count as that share
            share = self.running.pop(stage.name, 1)
            self.ran.setdefault(stage.kind, []).append((self.flops.get(stage.name, 0.0), info["seconds"] / share))
            msg = (f"{prefix} done in {info['seconds']:.1f}s  (elapsed {time.time() - self.t0:.0f}s, "
                   f"ETA ~{self.eta():.0f}s)")
        elif event == "interrupted":
            self.running.pop(stage.name, None)
            msg = f"{prefix} interrupted (rerun the same command to resume)"
        else:
            self.running.pop(stage.name, None)
            msg = f"{prefix} FAILED: {info.get('error')}"
        log.info(msg)
        if not self.quiet:
            print(msg, flush=True)


def prepare(config: str | Path | RunConfig, run_dir: str | Path, overrides: dict | None = None):
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    # One spelling of the run directory, whatever was typed (relative, absolute, trailing slash,
    # symlink): every path a stage derives from it, and so every cache key, generation record
    # and checkpoint fingerprint, is the same when a run is resumed.
    run_dir = Path(run_dir).resolve()
    stages, models = build(cfg, run_dir)
    return cfg, run_dir, stages, models


def run_pipeline(config: str | Path | RunConfig, run_dir: str | Path, *, only: list[str] | None = None,
                 until: str | None = None, force: list[str] | None = None, overrides: dict | None = None,
                 quiet: bool = False, disk_check: bool = True) -> Manifest:
    cfg, run_dir, stages, _ = prepare(config, run_dir, overrides)
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads or default_threads())
    workers = stage_workers(cfg)
    machine = measure_flops(0.5)  # on CPU, the plan's rate is this machine's, measured now
    rates = {} if machine["device"] == "cuda" else {"train_tflops": machine["flops_per_s"] / 1e12,
                                                    "gen_tflops": machine["flops_per_s"] / 1e12, "measured": True}
    plan = run_plan(cfg, run_dir, stages, config, **rates)
    if disk_check:
        check_disk(plan, run_dir)  # before anything is written: a run that cannot fit never starts
    with run_lock(run_dir):  # before the first write: one writer per run directory
        _quiet_libraries()
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        # the whole run's work (done stages too) and this machine's rate now: the report's timing chart
        whole = plan_run(cfg, stages, base_dir=_base_dir(config), **rates)
        write_json(run_dir / "plan.json", plan_record(whole, machine))
        handler = _attach_log_file(run_dir)
        tracker = tracking.open_tracker(cfg.tracking, run_dir, cfg.name)
        progress, tracked = ProgressPrinter(stages, quiet, plan), tracking.stage_hook(tracker, run_dir)
        try:
            log.info("run %s: %d stages", run_dir, len(stages))
            for line in plan_summary(plan):
                log.info(line)
                if not quiet:
                    print(line, flush=True)
            with keep_engines():  # vllm: one engine per base model across stages, until one trains
                flops = {s.stage: s.flops for s in whole.stages}  # side-by-side stages: heaviest first
                return run_stages(stages, run_dir, only=only, until=until, force=force,
                                  on_event=lambda *event: (progress(*event), tracked(*event)),
                                  workers=workers, weight=lambda stage: flops.get(stage.name, 0.0))
        finally:
            tracker.close()
            logging.getLogger("w2s").removeHandler(handler)
            handler.close()


def stage_workers(cfg: RunConfig) -> int:
    """Stages at a time: 2 on an idle CPU-only machine with automatic threads (`threads: 0`) and
    no launcher, where two one-thread processes generate ~1.3x faster than one with two threads
    (docs/toy_world.md, "Speed"); else 1. Only stages marked `parallel` (hf evaluations) pair up."""
    import torch

    if cfg.threads != 0 or cfg.launcher or torch.cuda.is_available():
        return 1
    return 2 if torch.get_num_threads() >= 2 else 1


def run_plan(cfg: RunConfig, run_dir: Path, stages: list[Stage], config=None, **rates) -> Plan:
    """The plan of what is left to do in `run_dir` (stages the manifest has done cost nothing)."""
    manifest = run_dir / "manifest.json"
    done = ({name for name, e in Manifest(run_dir).data["stages"].items() if e.get("status") == "done"}
            if manifest.exists() else set())
    return plan_run(cfg, stages, base_dir=_base_dir(config), done=done, **rates)


def _base_dir(config) -> Path:
    """Where a config's relative launcher files are looked for first: beside the config file."""
    return Path(config).parent if isinstance(config, (str, Path)) else Path(".")


def stage_status(run_dir: str | Path) -> list[dict]:
    """Each stage of a run directory's DAG with its state: done, stale (inputs changed),
    running/interrupted, failed or pending."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg, run_dir, stages, _ = prepare(cfg_path, run_dir)
    manifest = Manifest(run_dir)
    prints: dict[str, str | None] = {}
    rows = []
    for s in stages:
        e = manifest.entry(s.name)
        deps = [prints.get(d) for d in s.deps]
        key = None if None in deps else stage_key(s, deps)
        state = e.get("status", "pending")
        if state == "done" and e.get("key") != key:
            state = "stale"
        prints[s.name] = e.get("fingerprint") if state == "done" else None
        rows.append({"stage": s.name, "deps": s.deps, "status": state, "seconds": e.get("seconds"),
                     "kind": s.kind})
    return rows
