"""The run's data and the weak model: the splits on disk, tiny base models (CPU runs), the weak
model fine-tuned on the labeled set, D_weak (its zero-shot answers to the unlabeled questions),
D_icl (the strong base model's in-context answers with D_weak demonstrations) and, when a
configured strategy needs them, the strong model's k in-context samples."""

from __future__ import annotations

from pathlib import Path
from w2s import steps
from w2s.io import file_sha256, write_jsonl
from w2s.method.registry import PAIRS, SELECTION
from w2s.pipeline.layout import D_ICL, D_ICL_SAMPLES, D_WEAK, Q_DEV, Q_GOLD, Q_UNLABELED, SPLIT_FILES
from w2s.pipeline.parts.evals import EvalSpec
from w2s.tiny_models import build_from_spec
from w2s.pipeline.graph import Graph, Work


def add(g: Graph) -> None:
    cfg = g.cfg
    data = {k: v for k, v in cfg.data.model_dump().items()
            if not (k in ("dev", "limit_dev") and v is None)}  # runs without dev keep their keys
    g.add("load_data", lambda ctx: load_data(g, ctx), params={"data": data, "contents": _data_hashes(cfg.data)},
          outputs=[SPLIT_FILES[s] for s in ("gold", "unlabeled", "hidden_gold", "test")] + [Q_DEV] * bool(cfg.data.dev))
    for role in ("weak", "strong"):  # tiny locally built base models (CPU examples, tests)
        if getattr(cfg, role).model.startswith("tiny:"):
            g.add(f"base_{role}", lambda ctx, role=role: tiny_base(g, ctx, role), deps=["load_data"],
                  params={"spec": getattr(cfg, role).model}, outputs=[f"models/base_{role}"], kind="train")
    if cfg.weak.finetune:  # the weak model: fine-tuned on the labeled set (or used as is)
        g.add("weak_sft", lambda ctx: weak_sft(g, ctx), deps=["load_data"] + g.base_deps("weak"),
              params={"weak": cfg.weak.model, "train": cfg.weak.train, "seed": cfg.seed},
              outputs=["models/weak_sft"], kind="train", work=Work("weak", "gold", job="sft", train={"seed": cfg.seed, **cfg.weak.train}))
    if "weak" in cfg.baselines:
        g.add_model("weak", EvalSpec(model_stage="weak_sft") if cfg.weak.finetune else EvalSpec(base="weak"))
    weak_model = g.model_dir("weak_sft") if cfg.weak.finetune else g.base("weak")
    g.add("weak_answers", lambda ctx: g.generate(ctx, weak_model, unlabeled_prompts(g), g.sampling(), D_WEAK,
                                                 role="weak"),
          deps=["weak_sft"] if cfg.weak.finetune else ["load_data"] + g.base_deps("weak"),
          params=g.gen_params("weak"), outputs=[D_WEAK], kind="generate", work=Work("weak", "unlabeled"))
    g.add("icl_answers", lambda ctx: g.generate(ctx, g.base("strong"), icl_prompts(g), g.sampling(), D_ICL),
          deps=["weak_answers"] + g.base_deps("strong"),
          params=g.gen_params(strong=cfg.strong.model, shots=cfg.stage1.shots), outputs=[D_ICL], kind="generate",
          work=Work("strong", "unlabeled", shots=cfg.stage1.shots))
    if "icl_samples" in needed_inputs(g):
        add_icl_samples(g)


def needed_inputs(g: Graph) -> set[str]:
    """What the configured strategies declare they need (their entries' `needs`)."""
    entries = [SELECTION.get(g.cfg.stage1.selection)] + [PAIRS.get(g.cfg.stage2.pairs)] * g.cfg.stage2.enabled
    return {n for e in entries for n in e.needs}


def add_icl_samples(g: Graph) -> None:
    """The strong base model's k in-context samples per question, on D_icl's prompts: vote shares."""
    s1 = g.cfg.stage1
    sampling = g.sampling(n=s1.confidence_samples, temperature=s1.confidence_temperature)
    g.add("icl_samples", lambda ctx: g.generate(ctx, g.base("strong"), icl_prompts(g), sampling, D_ICL_SAMPLES),
          deps=["weak_answers"] + g.base_deps("strong"),
          params=g.gen_params(strong=g.cfg.strong.model, shots=s1.shots, k=s1.confidence_samples,
                              temperature=s1.confidence_temperature),
          outputs=[D_ICL_SAMPLES], kind="generate",
          work=Work("strong", "unlabeled", s1.confidence_samples, shots=s1.shots))


def unlabeled_prompts(g: Graph) -> list[dict]:
    return steps.zero_shot_prompts(g.task, g.questions(Q_UNLABELED))


def icl_prompts(g: Graph) -> list[dict]:
    return g.fewshot_prompts(g.questions(Q_UNLABELED))


def load_data(g: Graph, ctx) -> dict:
    splits = steps.prepare_splits(g.task, g.cfg.data, needs_gold_solutions=g.cfg.weak.finetune)
    for name, rows in splits.items():
        if name != "dev" or g.cfg.data.dev:
            write_jsonl(ctx.path(SPLIT_FILES[name]), rows)
    return {"n_gold": len(splits["gold"]), "n_unlabeled": len(splits["unlabeled"]),
            "n_hidden_gold": len(splits["hidden_gold"]), "n_test": len(splits["test"]),
            **({"n_dev": len(splits["dev"])} if g.cfg.data.dev else {})}


def tiny_base(g: Graph, ctx, role: str) -> dict:
    # pretraining text: the labeled set only (never the unlabeled answers)
    texts = [f"{g.task.prompt(r['question'])}{g.task.completion(r.get('solution', ''))}"
             for r in g.questions(Q_GOLD)]
    tmp = ctx.path(f"models/.base_{role}.tmp")
    build_from_spec(getattr(g.cfg, role).model, tmp, texts)
    tmp.rename(ctx.path(f"models/base_{role}"))
    return {}


def weak_sft(g: Graph, ctx) -> dict:
    data = ctx.work_path(".train")
    write_jsonl(data, steps.sft_records(g.task, g.questions(Q_GOLD)))
    result = g.train(ctx, "sft", g.base("weak"), data, "weak_sft", {"seed": g.cfg.seed, **g.cfg.weak.train})
    data.unlink(missing_ok=True)
    return result


def _data_hashes(data) -> dict:
    """Content hashes of the local data files, so that editing a file in place reruns what depends on it."""
    out = {}
    for name in ("gold", "unlabeled", "test", "hidden_gold", "dev"):
        p = getattr(data, name)
        if p and Path(p).is_file():
            out[name] = file_sha256(p)
    return out
