"""Stage II: M_plus samples k solutions per unlabeled question; a pair rule (the paper's: a
confident majority confirms or contradicts the weak answer) turns votes and the weak answers
into chosen/rejected pairs; DPO and/or ORPO from M_plus give m_pro_dpo / m_pro_orpo."""

from __future__ import annotations

from w2s import steps
from w2s.io import write_json, write_jsonl
from w2s.method.registry import PAIRS as PAIR_RULES
from w2s.pipeline.layout import D_WEAK, INPUT_FILES, PAIRS, PAIRS_SUMMARY, Q_HIDDEN, Q_UNLABELED, SAMPLES
from w2s.pipeline.parts.data import unlabeled_prompts
from w2s.pipeline.parts.evals import EvalSpec
from w2s.pipeline.graph import Graph, Work


def add(g: Graph) -> None:
    s2 = g.cfg.stage2
    if not s2.enabled:
        return
    m_plus = g.m_plus
    sampling = g.sampling(n=s2.samples, temperature=s2.temperature, top_p=s2.top_p)
    g.add("samples", lambda ctx: g.generate(ctx, g.model_dir(m_plus), unlabeled_prompts(g), sampling, SAMPLES),
          deps=[m_plus], params=g.gen_params(k=s2.samples, temperature=s2.temperature, top_p=s2.top_p),
          outputs=[SAMPLES], kind="generate", work=Work("strong", "unlabeled", s2.samples))
    add_pairs(g)
    for method in (["dpo", "orpo"] if s2.method == "both" else [s2.method]):
        add_preference(g, method, m_plus)


def add_pairs(g: Graph) -> None:
    s2 = g.cfg.stage2
    entry = PAIR_RULES.get(s2.pairs)
    declared = {p: getattr(s2, p) for p in entry.params}
    # an input such as icl_gens: the base strong model's in-context answers (D_icl); their
    # mistakes are less like M_plus's than a fine-tuned icl column's (docs/toy_world.md)
    files = {n: INPUT_FILES[n] for n in entry.needs if n in INPUT_FILES}

    def pairs(ctx):
        inputs = {n: g.records(ctx, rel) for n, (_, rel) in files.items()}
        built, summary = steps.preference_pairs(
            g.task, g.questions(Q_UNLABELED), g.records(ctx, D_WEAK), g.records(ctx, SAMPLES),
            min_confidence=s2.min_confidence, flip_confidence=s2.flip_confidence, max_pairs=s2.max_pairs,
            seed=g.cfg.seed, gold=g.questions(Q_HIDDEN), strategy=s2.pairs, stage1_ids=g.stage1_selected(ctx),
            **declared, **inputs)
        write_jsonl(ctx.path(PAIRS), built)
        write_json(ctx.path(PAIRS_SUMMARY), summary)
        return {k: v for k, v in summary.items() if k != "confidences"}

    g.add("pairs", pairs, deps=["samples", "weak_answers", "load_data"] + [stage for stage, _ in files.values()],
          params={"pairs": s2.pairs, "min_confidence": s2.min_confidence, "flip_confidence": s2.flip_confidence,
                  "max_pairs": s2.max_pairs, "seed": g.cfg.seed, **declared},
          outputs=[PAIRS, PAIRS_SUMMARY])
    g.report_inputs.append("pairs")


def add_preference(g: Graph, method: str, m_plus: str) -> None:
    name = f"m_pro_{method}"
    reason = (f"no preference pairs were built, so {name} = M_plus "
              "(lower stage2.min_confidence / flip_confidence, or sample more)")
    g.add(name, lambda ctx: g.train(ctx, "preference", g.model_dir(m_plus), ctx.path(PAIRS), name,
                                    g.strong_settings(g.cfg.stage2.train, method=method), empty_reason=reason),
          deps=["pairs", m_plus],
          params={"method": method, "train": g.cfg.stage2.train, "seed": g.cfg.seed, "lora": g.cfg.strong.lora},
          outputs=[f"models/{name}"], kind="train",
          work=Work("strong", "unlabeled", g.cfg.stage2.max_pairs, job="preference",
                    train=g.strong_settings(g.cfg.stage2.train, method=method)))
    g.add_model(name, EvalSpec(model_stage=name))
