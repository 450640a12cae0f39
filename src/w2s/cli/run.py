"""`w2s run`, `w2s status`, `w2s report`: the pipeline's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from w2s.cli.common import user_errors


def run(config: Path = typer.Argument(..., help="run config (YAML)"),
        out: Path = typer.Option(None, "--out", help="run directory (default runs/<config name>)"),
        only: Optional[List[str]] = typer.Option(None, "--only", help="run just this stage (repeatable)"),
        until: Optional[str] = typer.Option(None, "--until", help="run this stage and what it needs"),
        force: Optional[List[str]] = typer.Option(None, "--force", help="rerun this stage (repeatable)"),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="override a key, e.g. stage2.train.beta=0.2 (repeatable)"),
        quiet: bool = typer.Option(False, "--quiet", help="no per-stage lines"),
        rehearse: bool = typer.Option(False, "--rehearse", help="the whole stage graph on CPU with tiny random "
                                      "models of the same families and a few dozen questions per split"),
        no_disk_check: bool = typer.Option(False, "--no-disk-check", help="start even when the plan's disk total "
                                           "exceeds the free space of the run directory's filesystem")):
    """Run the whole method (Stages I-III as configured) with every baseline; resumes and reuses cached stages."""
    from w2s.pipeline import run_pipeline
    from w2s.pipeline.config import ConfigError, deep_merge, parse_override
    from w2s.pipeline.dag import StageFailed
    from w2s.pipeline.rehearse import rehearsal_config
    from w2s.plan import NotEnoughDisk

    with user_errors():
        try:
            overrides: dict = {}
            for s in set_ or []:
                overrides = deep_merge(overrides, parse_override(s))
            run_dir = out or Path("runs") / (config.stem + "_rehearsal" * rehearse)
            if rehearse:
                config, notes = rehearsal_config(config, run_dir, overrides)
                for line in notes:
                    typer.echo(f"rehearsal: {line}")
            run_pipeline(config, run_dir, only=only or None, until=until, force=force or None,
                         overrides=None if rehearse else overrides, quiet=quiet, disk_check=not no_disk_check)
        except ConfigError as e:
            typer.echo(f"config error: {e}", err=True)
            raise typer.Exit(2) from None
        except NotEnoughDisk as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except StageFailed as e:
            typer.echo(f"error: {e}\n(traceback in {run_dir / 'log.txt'}; finished stages are kept, "
                       f"rerun the same command to resume)", err=True)
            raise typer.Exit(1) from None
    print_results(run_dir)

def plan(config: Path = typer.Argument(..., help="run config (YAML)"),
         out: Path = typer.Option(None, "--out", help="run directory (default runs/<config name>): its done "
                                  "stages cost nothing, its filesystem's free space is compared"),
         set_: Optional[List[str]] = typer.Option(None, "--set", help="override a key (repeatable)"),
         train_tflops: float = typer.Option(150.0, "--train-tflops", help="training TFLOP/s reached per device"),
         gen_tflops: float = typer.Option(50.0, "--gen-tflops", help="generation TFLOP/s reached per device"),
         as_json: bool = typer.Option(False, "--json")):
    """Per stage: bytes written, peak memory per device (training, generation), tokens, time at a
    stated rate; the run's disk total. Reads config.json files only: no model is loaded."""
    import shutil
    from dataclasses import asdict

    from w2s.pipeline import prepare, run_plan
    from w2s.pipeline.config import ConfigError, deep_merge, parse_override
    from w2s.plan import human_bytes, plan_table

    with user_errors():
        try:
            overrides: dict = {}
            for s in set_ or []:
                overrides = deep_merge(overrides, parse_override(s))
            cfg, run_dir, stages, _ = prepare(config, out or Path("runs") / config.stem, overrides)
        except ConfigError as e:
            typer.echo(f"config error: {e}", err=True)
            raise typer.Exit(2) from None
        result = run_plan(cfg, run_dir, stages, config, train_tflops=train_tflops, gen_tflops=gen_tflops)
    if as_json:
        typer.echo(json.dumps({**asdict(result), "disk": result.disk, "seconds": result.seconds}))
        return
    for line in plan_table(result):
        typer.echo(line)
    where = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    typer.echo(f"plan: {human_bytes(shutil.disk_usage(where).free)} free where the run directory goes ({where})")


def status(run_dir: Path = typer.Argument(..., help="a run directory"),
           as_json: bool = typer.Option(False, "--json")):
    """Show the stage DAG of a run and what is done."""
    from w2s.pipeline import stage_status

    with user_errors():
        rows = stage_status(run_dir)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    marks = {"done": "✓", "stale": "~", "running": "…", "failed": "✗", "pending": " "}
    for r in rows:
        secs = f"{r['seconds']:.1f}s" if r["seconds"] is not None else ""
        deps = f"  <- {', '.join(r['deps'])}" if r["deps"] else ""
        typer.echo(f"[{marks.get(r['status'], '?')}] {r['stage']:<22} {r['status']:<8} {secs:>8}{deps}")

def report(run_dir: Path = typer.Argument(..., help="a run directory")):
    """Regenerate metrics.json, report.md and report.html from the run directory's files."""
    from w2s.pipeline import prepare, run_lock
    from w2s.pipeline.parts.evals import run_metrics
    from w2s.report import write_report

    with user_errors():
        if not (run_dir / "config.yaml").exists():
            raise ValueError(f"{run_dir}: not a run directory (no config.yaml)")
        cfg, _, _, models = prepare(run_dir / "config.yaml", run_dir)
        with run_lock(run_dir):  # a running `w2s run` writes these files too
            write_report(run_dir, run_metrics(cfg, run_dir, models))
    typer.echo(f"wrote {run_dir / 'report.md'} and {run_dir / 'report.html'}")
    print_results(run_dir)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("plan")(plan)
    app.command("status")(status)
    app.command("report")(report)


def print_results(run_dir: Path) -> None:
    from w2s.report import results_table

    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        return
    rows = results_table(json.loads(metrics_path.read_text()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        typer.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            typer.echo("  ".join("-" * w for w in widths))
    typer.echo(f"\nreport: {run_dir / 'report.html'}")
