"""The baselines every run reports beside the method: full weak fine-tuning (the strong model
trained on ALL of D_weak: the paper's naive weak-to-strong), the gold-SFT ceiling (trained on
the hidden gold solutions of the same questions) and the strong model few-shot. (The weak
floor is declared with the weak model, in `data`.)"""

from __future__ import annotations

from w2s import steps
from w2s.io import write_jsonl
from w2s.pipeline.layout import D_WEAK, Q_HIDDEN, Q_UNLABELED
from w2s.pipeline.parts.evals import EvalSpec
from w2s.pipeline.parts.stage1 import add_strong_sft
from w2s.pipeline.graph import Graph


def add(g: Graph) -> None:
    baselines = g.cfg.baselines
    if "full_weak" in baselines:
        g.add("full_weak_data", lambda ctx: write_sft(ctx, "data/full_weak.jsonl", steps.full_weak_records(
            g.task, g.questions(Q_UNLABELED), g.records(ctx, D_WEAK))),
              deps=["weak_answers", "load_data"], outputs=["data/full_weak.jsonl"])
        add_strong_sft(g, "full_weak", "full_weak_data", "data/full_weak.jsonl", "full_weak")
    if "gold_sft" in baselines:
        g.add("gold_sft_data", lambda ctx: write_sft(ctx, "data/gold_sft.jsonl", steps.gold_sft_records(
            g.task, g.questions(Q_UNLABELED), g.questions(Q_HIDDEN))),
              deps=["load_data"], outputs=["data/gold_sft.jsonl"])
        add_strong_sft(g, "gold_sft", "gold_sft_data", "data/gold_sft.jsonl", "gold_sft")
    if "strong_fewshot" in baselines:
        g.add_model("strong_fewshot", EvalSpec(base="strong", fewshot=True))


def write_sft(ctx, rel: str, records: list[dict]) -> dict:
    write_jsonl(ctx.path(rel), records)
    return {"n": len(records)}
