"""Every model the parts declared, scored on test (greedy + eval.n samples: accuracy, pass@k,
maj@k) and, with a dev split, greedily on dev (what settings are chosen by), M_plus also with
eval.n samples at each of eval.sweep_temperatures on dev; then the report, rebuilt from the run
directory's files every time."""

from __future__ import annotations

from dataclasses import dataclass
from w2s import steps
from w2s.pipeline.layout import Q_DEV, Q_TEST, eval_rel, label
from w2s.report import collect_metrics, write_report
from w2s.pipeline.graph import Graph, Work


@dataclass(frozen=True)
class EvalSpec:
    """What an eval stage scores: a trained model (its stage), or a base model used as is
    (the weak floor without fine-tuning, the strong model few-shot)."""

    model_stage: str | None = None
    base: str | None = None        # "weak" | "strong"
    fewshot: bool = False

    @property
    def role(self) -> str:
        return "weak" if self.base == "weak" or self.model_stage == "weak_sft" else "strong"


def add(g: Graph) -> None:
    cfg = g.cfg
    scored = []
    for report_name, spec in g.evals.items():
        for split in ["test"] * cfg.eval.test + ["dev"] * bool(cfg.data.dev):
            scored.append(add_eval(g, report_name, spec, split))
    if cfg.data.dev and cfg.eval.n and "m_plus" in g.models:
        m_plus = g.models["m_plus"].eval_name
        for temperature in dict.fromkeys(cfg.eval.sweep_temperatures):
            scored.append(add_eval(g, m_plus, g.evals[m_plus], "dev", temperature))
    g.add("report", lambda ctx: report(g, ctx), deps=scored + g.report_inputs,
          outputs=["metrics.json", "report.md", "report.html"], kind="report", always=True)


def samples_for(g: Graph, report_name: str, split: str) -> int:
    """k for a model's eval: eval.n on test (`eval.intermediate_n` for Stage I rows that are not
    M_plus); greedy only on dev."""
    if split == "dev":
        return 0
    intermediate = report_name.startswith("stage1_") and report_name != g.models["m_plus"].eval_name
    return g.cfg.eval.intermediate_n if intermediate and g.cfg.eval.intermediate_n is not None else g.cfg.eval.n


def add_eval(g: Graph, report_name: str, spec: EvalSpec, split: str, temperature: float | None = None) -> str:
    """The stage scoring one model on one split; with `temperature` (dev only), the temperature
    sweep: eval.n samples at that temperature beside greedy (is maj@k above greedy?)."""
    cfg = g.cfg
    n = cfg.eval.n if temperature is not None else samples_for(g, report_name, split)
    temp = cfg.eval.temperature if temperature is None else temperature
    stage = f"{'eval' if split == 'test' else 'dev'}_{report_name}" + (f"_t{temp:g}" if temperature is not None else "")
    deps = ["load_data"] + ([spec.model_stage] if spec.model_stage else
                            ["weak_answers"] * spec.fewshot + g.base_deps(spec.base))
    if temperature is not None:   # after the greedy dev eval, whose greedy answers it reuses
        deps.append(f"dev_{report_name}")
    g.add(stage, lambda ctx: evaluate(g, ctx, report_name, spec, split, n, temperature), deps=deps,
          params=g.gen_params(spec.role, n=n, temperature=temp,
                              model=spec.model_stage or f"@{spec.base}_{'fewshot' if spec.fewshot else 'base'}",
                              shots=cfg.stage1.shots if spec.fewshot else 0,
                              base=getattr(cfg, spec.base).model if spec.base == "weak" else None,
                              **({"split": "dev"} if split == "dev" else {})),
          outputs=[eval_rel(report_name, split, temperature)], kind="eval",
          work=Work(spec.role, split, 1 + n, shots=cfg.stage1.shots if spec.fewshot else 0),
          # a leaf that only writes its file: on CPU two hf evaluations may run side by side
          parallel=g.backend(spec.role) == "hf")
    return stage


def evaluate(g: Graph, ctx, report_name: str, spec: EvalSpec, split: str, n: int,
             temperature: float | None = None) -> dict:
    questions = g.questions(Q_TEST if split == "test" else Q_DEV)
    model = g.model_dir(spec.model_stage) if spec.model_stage else g.base(spec.base)
    prompts = g.fewshot_prompts(questions, seed_offset=1) if spec.fewshot else None
    gen = g.cfg.generation
    temp = g.cfg.eval.temperature if temperature is None else temperature
    metrics = steps.evaluate(g.task, model, questions, prompts=prompts, n=n, temperature=temp,
                             max_new_tokens=gen.max_new_tokens, backend=g.backend(spec.role), seed=g.cfg.seed,
                             out_path=ctx.path(eval_rel(report_name, split, temperature)), progress=True,
                             model_label=label(g.run_dir, model), **gen.options,
                             greedy_from=ctx.path(eval_rel(report_name, split)) if temperature is not None else None)
    return {k: metrics.get(k) for k in ("n", "accuracy", "k", "pass@k", "maj@k", "avg@k") if k in metrics}


def run_metrics(cfg, run_dir, models) -> dict:
    """metrics.json's content for a run of `cfg` (the report stage and `w2s report`)."""
    swept = cfg.eval.sweep_temperatures if cfg.eval.n and cfg.data.dev and "m_plus" in models else ()
    return collect_metrics(run_dir, models, {float(t): eval_rel(models["m_plus"].eval_name, "dev", t)
                                             for t in dict.fromkeys(swept)})


def report(g: Graph, ctx) -> dict:
    metrics = run_metrics(g.cfg, ctx.run_dir, g.models)
    write_report(ctx.run_dir, metrics)
    return {"models": sorted(metrics["models"])}
