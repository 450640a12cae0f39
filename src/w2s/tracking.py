"""The run in the tracker researchers watch (`tracking:` in a run config).

    tracking: {backend: tensorboard | wandb | trackio | none, project, run_name, group}

The pipeline logs the method's own numbers at the stage that produces them (each stage's
summary: selection coverage and precision, pair counts, pseudo-label precision, per-model
accuracy; then, from metrics.json, accuracy with CI, pass@k, maj@k, PGR and the Stage III
rounds as a table), and every trainer of the run logs under the run's name and group
(`trainer_settings`). TensorBoard files live under RUN/tracking/; wandb honours WANDB_MODE
(offline works without network).
"""

from __future__ import annotations

import json
import os
from numbers import Real
from pathlib import Path
from typing import Any

BACKENDS = ("none", "tensorboard", "wandb", "trackio")


def scalars(prefix: str, values: dict, depth: int = 2) -> dict[str, float]:
    """The numbers of a (nested) summary as flat `prefix/key` scalars; lists and text are left out."""
    out: dict[str, float] = {}
    for k, v in values.items():
        if isinstance(v, bool):
            out[f"{prefix}/{k}"] = float(v)
        elif isinstance(v, Real):
            out[f"{prefix}/{k}"] = float(v)
        elif isinstance(v, dict) and depth > 1:
            out.update(scalars(f"{prefix}/{k}", v, depth - 1))
    return out


class Tracker:
    """No tracker: every call is a no-op (the default)."""

    def log(self, values: dict[str, float], step: int) -> None:
        pass

    def table(self, name: str, rows: list[dict]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def table(self, name: str, rows: list[dict]) -> None:
        if rows:
            header = list(rows[0])
            text = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" + "\n".join(
                "| " + " | ".join(str(r.get(h, "")) for h in header) + " |" for r in rows)
            self.writer.add_text(name, text)
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, project: str, name: str, group: str | None, run_dir: Path):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, group=group, dir=str(run_dir), reinit="create_new",
                              config={"run_dir": str(run_dir)})

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, "stage_index": step})

    def table(self, name: str, rows: list[dict]) -> None:
        if rows:
            columns = list(rows[0])
            self.run.log({name: self.wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})

    def close(self) -> None:
        self.run.finish()


class TrackioTracker(Tracker):
    def __init__(self, project: str, name: str, group: str | None):
        import trackio

        self.run = trackio.init(project=project, name=name, group=group)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values)

    def close(self) -> None:
        self.run.finish()


def run_name(section, run_dir: Path, cfg_name: str | None) -> str:
    return section.run_name or cfg_name or Path(run_dir).name


def open_tracker(section, run_dir: Path, cfg_name: str | None = None) -> Tracker:
    """The tracker a `tracking:` section names (a missing library is one error naming its extra)."""
    name, project = run_name(section, run_dir, cfg_name), section.project or "w2s"
    try:
        if section.backend == "tensorboard":
            return TensorBoardTracker(Path(run_dir) / "tracking" / "tensorboard" / "pipeline")
        if section.backend == "wandb":
            return WandbTracker(project, name, section.group, Path(run_dir))
        if section.backend == "trackio":
            return TrackioTracker(project, name, section.group)
    except ImportError as e:
        raise RuntimeError(f"tracking.backend {section.backend}: {e.name} is not installed "
                           f"(pip install 'w2s-reasoning[tracking]')") from None
    return Tracker()


def trainer_settings(section, run_dir: Path, cfg_name: str | None, stage: str) -> dict[str, Any]:
    """What a training stage adds to its settings so that the trainer logs into the run's tracker:
    `report_to`, and TRL's `run_name` / `logging_dir` (through `extra`)."""
    if section.backend == "none":
        return {}
    if section.backend == "wandb":  # the trainers' wandb runs join the pipeline's project and group
        os.environ.setdefault("WANDB_PROJECT", section.project or "w2s")
        if section.group:
            os.environ.setdefault("WANDB_RUN_GROUP", section.group)
    out = {"report_to": section.backend, "extra": {"run_name": f"{run_name(section, run_dir, cfg_name)}/{stage}"}}
    if section.backend == "tensorboard":
        out["logging_dir"] = str(Path(run_dir) / "tracking" / "tensorboard" / stage)
    return out


def stage_hook(tracker: Tracker, run_dir: Path):
    """A pipeline event hook: each finished stage's summary numbers, and the report's numbers
    once the report stage has written metrics.json."""
    def on_event(event: str, stage, info: dict) -> None:
        if event != "done":
            return
        tracker.log(scalars(stage.name, info.get("result") or {}), info.get("index", 0))
        metrics_file = Path(run_dir) / "metrics.json"
        if stage.kind == "report" and metrics_file.exists():
            log_metrics(tracker, json.loads(metrics_file.read_text()), info.get("index", 0))
    return on_event


def log_metrics(tracker: Tracker, metrics: dict, step: int) -> None:
    """The report's numbers: per model accuracy (CI bounds), pass@k, maj@k, avg@k, PGR; Stage III
    rounds as a table."""
    values, rows = {}, []
    for name, m in (metrics.get("models") or {}).items():
        ci = m.get("ci95") or [None, None]
        row = {"model": name, "accuracy": m.get("accuracy"), "ci_low": ci[0], "ci_high": ci[1],
               "pass@k": m.get("pass@k"), "maj@k": m.get("maj@k"), "avg@k": m.get("avg@k"), "pgr": m.get("pgr")}
        rows.append(row)
        values.update({f"model/{name}/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "model"})
    tracker.log(values, step)
    tracker.table("models", rows)
    rounds = (metrics.get("stage3") or {}).get("rounds") or []
    tracker.table("stage3_rounds", [{k: v for k, v in r.items() if k != "reward_curve"} for r in rounds])
