"""The graph of stages being built: what every part of the method (`parts/`) uses to add its
stages and declare the models the report scores. `parts.build(cfg, run_dir)` runs the parts.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from w2s import steps, tracking
from w2s.generation import SPEED_ONLY_OPTIONS, SamplingConfig
from w2s.io import read_records
from w2s.pipeline import layout
from w2s.pipeline.dag import Stage, StageContext, Work  # noqa: F401  (Work: what parts declare)
from w2s.registry import Registry
from w2s.report import ModelRef

#: extra parts from outside w2s, named in a config as "package.module:function" (key `parts`)
PARTS = Registry("pipeline part", key="parts")


class Graph:
    """The stages of one run as they are added, and what parts share to add them."""

    def __init__(self, cfg, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.task = steps.make_task(cfg.task)
        self.stages: list[Stage] = []
        self.models: dict[str, ModelRef] = {}   # report name -> where its model and scores live
        self.evals: dict = {}                   # report name -> parts.evals.EvalSpec
        self.report_inputs: list[str] = []      # stages whose summaries the report reads
        self.m_plus: str | None = None          # M_plus's stage, set by Stage I

    def add(self, name, fn, deps=(), params=None, outputs=(), kind="data", always=False, work=None,
            parallel=False) -> None:
        self.stages.append(Stage(name, fn, list(deps), {"task": self.cfg.task, **(params or {})},
                                 list(outputs), kind, always, work, parallel))

    def add_model(self, report_name: str, spec) -> None:
        """A model the report scores; `spec` (parts.evals.EvalSpec) says what its eval generates with."""
        self.evals[report_name] = spec
        self.models[report_name] = ModelRef(spec.model_stage, report_name)

    # ---- generation ------------------------------------------------------------
    def sampling(self, n: int = 1, temperature: float = 0.0, top_p: float = 1.0) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.cfg.generation.max_new_tokens,
                              temperature=temperature if n > 1 or temperature else 0.0,
                              top_p=top_p, top_k=0, n=n, stop=tuple(self.task.stop), seed=self.cfg.seed)

    def backend(self, role: str = "strong") -> str:
        """The generation backend for a role's model: `weak.backend` may override it for the weak one."""
        return (self.cfg.weak.backend if role == "weak" else None) or self.cfg.generation.backend

    def gen_params(self, role: str = "strong", **extra) -> dict:
        """A generation stage's cache key: what shapes its records (never batch sizes)."""
        g = self.cfg.generation
        return {"backend": self.backend(role), "max_new_tokens": g.max_new_tokens, "seed": self.cfg.seed,
                "options": {k: v for k, v in g.options.items() if k not in SPEED_ONLY_OPTIONS}, **extra}

    def generate(self, ctx: StageContext, model: str, prompts: list[dict], sampling, out: str,
                 role: str = "strong") -> dict:
        records = steps.generate_file(model, prompts, sampling, ctx.path(out), partial=ctx.work_path(),
                                      backend=self.backend(role), label=layout.label(self.run_dir, model),
                                      **self.cfg.generation.options)
        return {"n": len(records)}

    def fewshot_prompts(self, questions: list[dict], seed_offset: int = 0) -> list[dict]:
        """k-shot prompts with demonstrations from D_weak (the strong model's in-context view)."""
        return steps.fewshot_prompts(self.task, questions, read_records(self.run_dir / layout.D_WEAK),
                                     k=self.cfg.stage1.shots, seed=self.cfg.seed + seed_offset,
                                     demo_questions=self.questions(layout.Q_UNLABELED))

    # ---- models and files ------------------------------------------------------
    def base(self, role: str) -> str:
        """The weak/strong base model: a hub name or path, or a tiny model this run builds."""
        spec = getattr(self.cfg, role).model
        return self.model_dir(f"base_{role}") if spec.startswith("tiny:") else spec

    def base_deps(self, role: str) -> list[str]:
        return [f"base_{role}"] if getattr(self.cfg, role).model.startswith("tiny:") else []

    def model_dir(self, stage_name: str) -> str:
        return str(self.run_dir / layout.model_rel(stage_name))

    def questions(self, rel: str) -> list[dict]:
        return _read_cached(str(self.run_dir / rel))

    def records(self, ctx: StageContext, rel: str) -> list[dict]:
        return read_records(ctx.path(rel))

    def stage1_selected(self, ctx: StageContext) -> list[str]:
        """The ids M_plus's Stage I iteration selected (for the overlap diagnostics)."""
        return [r["id"] for r in self.records(ctx, f"{layout.iteration_dir(self.cfg.stage1.iterations)}/hybrid.jsonl")]

    def train(self, ctx: StageContext, kind: str, model: str, data: Path, out_stage: str, settings: dict,
              empty_reason: str | None = None) -> dict:
        tracked = tracking.trainer_settings(self.cfg.tracking, self.run_dir, self.cfg.name, out_stage)
        if tracked:  # the trainer logs into the run's tracker (the model does not depend on it)
            settings = {**settings, **tracked, "extra": {**settings.get("extra", {}), **tracked["extra"]}}
        return steps.train(kind, model, data, ctx.path(layout.model_rel(out_stage)), settings,
                           launcher=self.cfg.launcher, job_file=ctx.work_path(".job", suffix=".json"),
                           empty_reason=empty_reason)

    def strong_settings(self, section_train: dict, **extra) -> dict:
        """Training settings of a strong model: the run's seed, the section's settings, LoRA."""
        settings = {"seed": self.cfg.seed, **section_train, **extra}
        if self.cfg.strong.lora is not None:
            settings["lora"] = dict(self.cfg.strong.lora)
        return settings


def dependencies_first(stages: list[Stage]) -> list[Stage]:
    """The stages in the order they were added, except that each comes after everything it
    depends on (m_rl needs the dev score of a model whose eval stages are added later)."""
    by_name = {s.name: s for s in stages}
    placed: set[str] = set()
    out: list[Stage] = []

    def place(stage: Stage, path: tuple[str, ...] = ()) -> None:
        if stage.name in placed:
            return
        if stage.name in path:
            raise ValueError(f"stage graph has a cycle: {' -> '.join(path + (stage.name,))}")
        for d in stage.deps:
            if d not in by_name:
                raise ValueError(f"stage {stage.name!r} depends on {d!r}, which this run does not have")
            place(by_name[d], path + (stage.name,))
        placed.add(stage.name)
        out.append(stage)

    for stage in stages:
        place(stage)
    return out


@lru_cache(maxsize=32)
def _read_cached_impl(path: str, mtime: float) -> tuple:
    return tuple(read_records(path))


def _read_cached(path: str) -> list[dict]:
    p = Path(path)
    return [dict(r) for r in _read_cached_impl(path, p.stat().st_mtime if p.exists() else 0.0)]
