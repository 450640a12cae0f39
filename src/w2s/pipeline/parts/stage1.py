"""Stage I: keep the unlabeled questions a selection rule picks (the paper's: the weak and the
in-context answers agree), train the ORIGINAL strong model on them; each later iteration's two
columns are regenerated zero-shot by the previous iteration's weak- and icl-variant models.
M_plus is the last iteration's `stage1.m_plus` variant (hybrid, the paper's, by default)."""

from __future__ import annotations

from w2s import steps
from w2s.method.registry import SELECTION
from w2s.pipeline.layout import D_ICL, D_WEAK, INPUT_FILES, Q_HIDDEN, Q_UNLABELED, iteration_dir
from w2s.pipeline.parts.data import unlabeled_prompts
from w2s.pipeline.parts.evals import EvalSpec
from w2s.report import ModelRef
from w2s.pipeline.graph import Graph, Work

VARIANTS = ("weak", "icl", "hybrid")


def add(g: Graph) -> None:
    cfg = g.cfg
    iters = cfg.stage1.iterations
    gen_stage, gen_file = {"weak": "weak_answers", "icl": "icl_answers"}, {"weak": D_WEAK, "icl": D_ICL}
    for i in range(1, iters + 1):
        if i > 1:
            for col in ("weak", "icl"):
                gen_stage[col], gen_file[col] = add_regeneration(g, i, col)
        add_selection(g, i, dict(gen_stage), dict(gen_file))  # copies: the bodies run later
        variants = set(cfg.stage1.variants) | {cfg.stage1.m_plus}
        if i < iters:
            variants |= {"weak", "icl"}  # they regenerate the next iteration's data
        for v in VARIANTS:
            if v in variants:
                add_strong_sft(g, f"sft_iter{i}_{v}", f"select_iter{i}", f"{iteration_dir(i)}/{v}.jsonl",
                               f"stage1_iter{i}_{v}", per_question=2 if v == "hybrid" else 1)
    g.m_plus = f"sft_iter{iters}_{cfg.stage1.m_plus}"
    g.models["m_plus"] = ModelRef(g.m_plus, f"stage1_iter{iters}_{cfg.stage1.m_plus}")  # same model: its eval


def add_regeneration(g: Graph, i: int, col: str) -> tuple[str, str]:
    """Iteration i's `col` column: the previous iteration's `col`-variant model, zero-shot."""
    model, out = g.model_dir(f"sft_iter{i - 1}_{col}"), f"{iteration_dir(i)}/gen_{col}.jsonl"
    g.add(f"regen_iter{i}_{col}", lambda ctx: g.generate(ctx, model, unlabeled_prompts(g), g.sampling(), out),
          deps=[f"sft_iter{i - 1}_{col}"], params=g.gen_params(), outputs=[out], kind="generate",
          work=Work("strong", "unlabeled"))
    return f"regen_iter{i}_{col}", out


def add_selection(g: Graph, i: int, gen_stage: dict, gen_file: dict) -> None:
    entry = SELECTION.get(g.cfg.stage1.selection)
    params = {p: getattr(g.cfg.stage1, p) for p in entry.params}
    seed = {"seed": g.cfg.seed} if "seed" in entry.needs else {}
    iteration = {"iteration": i} if "iteration" in entry.needs else {}
    files = {n: INPUT_FILES[n] for n in entry.needs if n in INPUT_FILES}

    def select(ctx):
        inputs = {n: g.records(ctx, rel) for n, (_, rel) in files.items()}
        sel, summary = steps.select(g.task, g.questions(Q_UNLABELED), g.records(ctx, gen_file["weak"]),
                                    g.records(ctx, gen_file["icl"]), gold=g.questions(Q_HIDDEN),
                                    weak_labels=g.records(ctx, D_WEAK), strategy=g.cfg.stage1.selection,
                                    seed=g.cfg.seed, **params, **iteration, **inputs)
        summary = {"iteration": i, **summary}
        steps.write_selection(ctx.path(iteration_dir(i)), sel, summary)
        return summary

    out = iteration_dir(i)
    g.add(f"select_iter{i}", select,
          deps=[gen_stage["weak"], gen_stage["icl"], "load_data"] + [stage for stage, _ in files.values()],
          params={"selection": g.cfg.stage1.selection, **params, **seed, **iteration},
          outputs=[f"{out}/{v}.jsonl" for v in VARIANTS] + [f"{out}/summary.json"])
    g.report_inputs.append(f"select_iter{i}")


def add_strong_sft(g: Graph, name: str, data_stage: str, data_rel: str, report_name: str | None,
                   per_question: float = 1) -> None:
    """The ORIGINAL strong model fine-tuned on `data_rel` (Stage I variants and SFT baselines)."""
    cfg = g.cfg
    g.add(name, lambda ctx: g.train(ctx, "sft", g.base("strong"), ctx.path(data_rel), name,
                                    g.strong_settings(cfg.strong.train),
                                    empty_reason=f"{name}: {data_rel} is empty (nothing selected)"),
          deps=[data_stage] + g.base_deps("strong"),
          params={"strong": cfg.strong.model, "train": cfg.strong.train, "lora": cfg.strong.lora, "seed": cfg.seed},
          outputs=[f"models/{name}"], kind="train",
          work=Work("strong", "unlabeled", per_question, job="sft", train=g.strong_settings(cfg.strong.train)))
    if report_name:
        g.add_model(report_name, EvalSpec(model_stage=name))
