"""Stage III (beyond the paper): label-free RL. Per round r the policy samples, a pseudo-label
rule (the reward's: agreement with the weak / in-context answers, or the majority) labels the
questions from those samples (no gold), GRPO trains the next policy. m_rl is the round with the
best greedy dev accuracy (else the last); models/m_rl links to it."""

from __future__ import annotations

from w2s import steps
from w2s.io import read_json, write_json, write_jsonl
from w2s.method.registry import LABEL_RULES, REWARDS
from w2s.pipeline.layout import D_ICL, D_WEAK, INPUT_FILES, Q_HIDDEN, Q_UNLABELED, STAGE3_SUMMARY, stage3_dir
from w2s.pipeline.parts.evals import EvalSpec, add_eval
from w2s.pipeline.graph import Graph, Work


def start_name(g: Graph) -> str:
    """Stage III's starting policy: `stage3.start`, by default the Stage II model when Stage II
    runs (DPO when it trains both), else M_plus."""
    cfg = g.cfg
    if cfg.stage3.start is not None:
        return cfg.stage3.start
    if not cfg.stage2.enabled:
        return "m_plus"
    return "m_pro_orpo" if cfg.stage2.method == "orpo" else "m_pro_dpo"


def add(g: Graph) -> None:
    s3 = g.cfg.stage3
    if not s3.enabled:
        return
    start = start_name(g)
    # the starting policy's stage, and the eval that scores it (M_plus's eval is its Stage I row's)
    policy = g.m_plus if start == "m_plus" else start
    start_eval = g.models["m_plus"].eval_name if start == "m_plus" else start
    rounds = []
    for r in range(1, s3.rounds + 1):
        add_samples(g, r, policy)
        add_labels(g, r)
        rounds.append(add_grpo(g, r, policy))
        policy = rounds[-1]
    dev = g.cfg.data.dev is not None
    deps = [f"stage3_labels_r{r}" for r in range(1, s3.rounds + 1)] + rounds + \
        ([f"dev_{n}" for n in rounds] + [f"dev_{start_eval}"] if dev else [])
    g.add("m_rl", lambda ctx: m_rl(g, ctx, start, start_eval), deps=deps,
          params={"rounds": s3.rounds, "reward": s3.reward}, outputs=["models/m_rl", STAGE3_SUMMARY], kind="train")
    g.add_model("m_rl", EvalSpec(model_stage="m_rl"))
    g.report_inputs.append("m_rl")


def add_samples(g: Graph, r: int, policy: str) -> None:
    s3 = g.cfg.stage3
    out = f"{stage3_dir(r)}/samples.jsonl"

    def samples(ctx):
        questions = steps.stage3_questions(g.questions(Q_UNLABELED), s3.max_questions, g.cfg.seed, r)
        return g.generate(ctx, g.model_dir(policy), steps.zero_shot_prompts(g.task, questions),
                          g.sampling(n=s3.samples, temperature=s3.temperature), out)

    g.add(f"stage3_samples_r{r}", samples, deps=[policy, "load_data"],
          params=g.gen_params(k=s3.samples, temperature=s3.temperature, round=r, max_questions=s3.max_questions),
          outputs=[out], kind="generate", work=Work("strong", "unlabeled", s3.samples, limit=s3.max_questions))


def add_labels(g: Graph, r: int) -> None:
    s3, d = g.cfg.stage3, stage3_dir(r)
    rule = LABEL_RULES.get(REWARDS.get(s3.reward).obj.pseudo_label_rule)
    declared = {p: getattr(s3, p) for p in rule.params}
    files = {n: INPUT_FILES[n] for n in rule.needs if n in INPUT_FILES}   # hidden_gold: the gold control

    def labels(ctx):
        samples = g.records(ctx, f"{d}/samples.jsonl")
        inputs = {n: g.records(ctx, rel) for n, (_, rel) in files.items()}
        ids = {str(s["id"]) for s in samples}
        questions = [q for q in g.questions(Q_UNLABELED) if q["id"] in ids]
        records, summary = steps.stage3_labels(g.task, questions, samples, g.records(ctx, D_WEAK),
                                               g.records(ctx, D_ICL), reward=s3.reward,
                                               gold=g.questions(Q_HIDDEN), stage1_ids=g.stage1_selected(ctx),
                                               **declared, **inputs)
        write_jsonl(ctx.path(f"{d}/train.jsonl"), records)
        write_json(ctx.path(f"{d}/labels_summary.json"), {"round": r, **summary})
        return summary

    g.add(f"stage3_labels_r{r}", labels, deps=[f"stage3_samples_r{r}", "weak_answers", "icl_answers", "load_data"],
          params={"reward": s3.reward, "min_support": s3.min_support, "prefer": s3.prefer,
                  "min_confidence": s3.min_confidence},
          outputs=[f"{d}/train.jsonl", f"{d}/labels_summary.json"])


def add_grpo(g: Graph, r: int, policy: str) -> str:
    """GRPO from `policy` on round r's pseudo-labels (and, with a dev split, its greedy dev score:
    what m_rl is chosen by). Returns the round's stage."""
    cfg, name = g.cfg, f"stage3_round{r}"
    reason = (f"stage3 round {r}: no question got a pseudo-label, so the policy is unchanged "
              "(lower stage3.min_support / min_confidence, or sample more)")
    settings = g.strong_settings({"max_completion_length": cfg.generation.max_new_tokens, **cfg.stage3.train},
                                 reward=cfg.stage3.reward, task=cfg.task)
    g.add(name, lambda ctx: g.train(ctx, "grpo", g.model_dir(policy), ctx.path(f"{stage3_dir(r)}/train.jsonl"),
                                    name, settings, empty_reason=reason),
          deps=[f"stage3_labels_r{r}", policy],
          params={"reward": cfg.stage3.reward, "train": cfg.stage3.train, "seed": cfg.seed, "lora": cfg.strong.lora,
                  "max_completion_length": cfg.generation.max_new_tokens},
          outputs=[f"models/{name}"], kind="train",
          work=Work("strong", "unlabeled", job="grpo", train=settings, limit=cfg.stage3.max_questions))
    if cfg.data.dev:
        add_eval(g, name, EvalSpec(model_stage=name), split="dev")
    return name


def m_rl(g: Graph, ctx, start: str, start_eval: str) -> dict:
    """The per-round monitor -> data/stage3/summary.json; models/m_rl -> the chosen round's model."""
    rounds = [{"round": r, **steps.stage3_round(ctx.path(f"{stage3_dir(r)}/labels_summary.json"),
                                                g.model_dir(f"stage3_round{r}"),
                                                ctx.path(f"eval_dev/stage3_round{r}.json"))}
              for r in range(1, g.cfg.stage3.rounds + 1)]
    start_dev = ctx.path(f"eval_dev/{start_eval}.json")
    summary = steps.stage3_summary(rounds, g.cfg.stage3.reward, start,
                                   read_json(start_dev).get("accuracy") if start_dev.exists() else None)
    pick = summary["chosen_round"]  # 0: no round beat the start policy on dev, m_rl is the start policy
    steps.link_model(ctx.path("models/m_rl"), f"stage3_round{pick}" if pick else (g.m_plus if start == "m_plus" else start))
    write_json(ctx.path(STAGE3_SUMMARY), summary)
    return {"chosen_round": summary["chosen_round"]}
