"""The method's steps, each ONE plain function over records and files.

The pipeline's stages (`w2s.pipeline.parts`) and the CLI commands (`w2s.cli`) call these same
functions, so `w2s select` on files and the pipeline's select stage give the same records and
the same summary. A step returns its outputs and, where it has one, a summary dict (what the
CLI prints and the pipeline stores); it never reads a config object.

    task = make_task("gsm8k")                       # or {"name": "custom", "question_field": ...}
    prompts = zero_shot_prompts(task, questions)
    gens = generate_file(model, prompts, sampling, "d_weak.jsonl")
    sel, summary = select(task, questions, weak_gens, icl_gens, gold=hidden)
    prefs, summary = preference_pairs(task, questions, weak_gens, samples, gold=hidden)
    train("sft", model, "hybrid.jsonl", "models/m_plus", {"learning_rate": 1e-4})
    metrics = evaluate(task, model, test_questions, n=10, gen_dir="eval", stem="m_plus")

Evaluation is `w2s.evaluation.evaluate`, re-exported here: there is one evaluator.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from w2s import generation
from w2s.evaluation import evaluate  # noqa: F401  (the one evaluation path)
from w2s.io import DataError, read_json, read_records, write_json, write_jsonl
from w2s.method import metrics, pseudo_labels, voting
from w2s.method.fewshot import build_fewshot_prompts, zero_shot_prompts  # noqa: F401  (re-exported)
from w2s.method.registry import LABEL_RULES, PAIRS, REWARDS, SELECTION, chosen
from w2s.method.selection import full_weak_sft
from w2s.tasks import make_task  # noqa: F401  (re-exported: one way to build a task)
from w2s.tasks.base import Task, seeded_rng
from w2s.models import is_adapter_dir
from w2s.training import LoraSettings, launch, read_lineage, untrained_copy
from w2s.training.identity import untrained_adapter

log = logging.getLogger("w2s.steps")


# ---- data --------------------------------------------------------------------
def load_questions(task: Task, path: str, limit: int | None = None, id_prefix: str | None = None) -> list[dict]:
    """Question records of a data file, the first `limit` of them when given."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or absent), got {limit}")
    rows = task.load_questions(path, id_prefix=id_prefix)
    return rows[:limit] if limit else rows


def prepare_splits(task: Task, data, needs_gold_solutions: bool) -> dict[str, list[dict]]:
    """The run's splits from a `data:` section: {gold, unlabeled (questions only), hidden_gold
    (id, answer, solution: diagnostics and the ceiling only), test, dev (empty without one)}.
    A scoring split without a gold answer, or a labeled set without solutions when the weak
    model is fine-tuned, is an error naming the file and row."""
    d = data
    gold = load_questions(task, d.gold, d.limit_gold, "gold")
    missing = [r["id"] for r in gold if not r.get("solution")]
    if needs_gold_solutions and missing:
        raise ValueError(f"{d.gold}: question {missing[0]!r} has no gold solution, "
                         f"needed to fine-tune the weak model (weak.finetune: true)")
    unlabeled = load_questions(task, d.unlabeled, d.limit_unlabeled, "unlabeled")
    hidden = {r["id"]: r for r in (load_questions(task, d.hidden_gold, None, "unlabeled")
                                   if d.hidden_gold else unlabeled)}
    test = load_questions(task, d.test, d.limit_test, "test")
    dev = load_questions(task, d.dev, d.limit_dev, "dev") if d.dev else []
    for path, rows in ((d.test, test), (d.dev, dev)):
        bad = next((i for i, r in enumerate(rows, 1) if "answer" not in r), None)
        if bad is not None:
            raise ValueError(f"{path}: row {bad}: no gold answer; a scoring split needs one per question")
    return {"gold": gold, "unlabeled": [{"id": r["id"], "question": r["question"]} for r in unlabeled],
            "hidden_gold": [{k: v for k, v in hidden[r["id"]].items() if k in ("id", "answer", "solution")}
                            for r in unlabeled if r["id"] in hidden],
            "test": test, "dev": dev}


def read_generations(path: str | os.PathLike) -> list[dict]:
    """Generation records from a file; an id without a string `response` is an error naming the
    row (not a traceback three functions later)."""
    records = read_records(path, required=("id", "response"))
    for i, r in enumerate(records, 1):
        if not isinstance(r["response"], str):
            raise DataError(path, f"expected a string, got {type(r['response']).__name__}", row=i, field="response")
    return records


def fewshot_prompts(task: Task, questions: Sequence[dict], demos: Sequence[dict], k: int, seed: int,
                    demo_questions: Sequence[dict] | None = None) -> list[dict]:
    """k-shot prompts whose demonstrations are generation records (weak outputs) joined by id to
    `demo_questions` (default: `questions` themselves). Demonstrations that join no question
    are an error: falling back to zero-shot would report a few-shot number that is not one."""
    pool_questions = questions if demo_questions is None else demo_questions
    known = {str(q["id"]) for q in pool_questions}
    if k > 0 and demos and not any(str(d["id"]) in known or isinstance(d.get("question"), str) for d in demos):
        raise DataError(None, f"none of the {len(demos)} demonstration ids joins a question id (e.g. "
                              f"{str(demos[0]['id'])!r} vs {next(iter(known), '')!r}), and none carries its own "
                              "'question' field", field="id")
    prompts = build_fewshot_prompts(task, questions, demos, k=k, seed=seed, demo_questions=demo_questions)
    if k > 0 and prompts and not any(p["demo_ids"] for p in prompts):
        log.warning("no demonstration has a usable final answer: the %d-shot prompts are zero-shot", k)
    return prompts


# ---- generation ----------------------------------------------------------------
def generate_file(model: str, prompts: Sequence[dict], sampling, out: str | os.PathLike, *,
                  partial: str | os.PathLike | None = None, backend: str = "hf", adapter: str | None = None,
                  progress: bool = True, label: str | None = None, **backend_options) -> list[dict]:
    """Generate into `out`. With `partial`, work streams there (resumable) and is renamed to
    `out` once complete, so `out` exists only when whole; without, `out` itself is the
    resumable stream (the CLI's `w2s generate`)."""
    stream = Path(partial) if partial is not None else Path(out)
    records = generation.generate(model, prompts, sampling, backend=backend, out_path=stream, adapter=adapter,
                       progress=progress, label=label, **backend_options)
    if partial is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stream, out)
    return records


# ---- Stage I -------------------------------------------------------------------
def select(task: Task, questions: Sequence[dict], weak_gens: Sequence[dict], icl_gens: Sequence[dict],
           gold: Sequence[dict] | None = None, weak_labels: Sequence[dict] | None = None,
           strategy: str = "consistency", **available):
    """Stage I selection by the registered `strategy` (`stage1.selection`; default the paper's
    final-answer consistency) and its summary. Of `available` (config values and inputs by
    name: `seed`, `icl_samples`, `confidence_threshold`, `iteration`, ...), the strategy gets what
    its entry declares. `gold` (question records with `answer`, hidden
    from the method) adds diagnostics only: the precision of what was selected and the accuracy
    of the raw weak labels (`weak_labels`, default `weak_gens`; the pipeline passes D_weak at
    every iteration). Returns (Selection, summary)."""
    entry = SELECTION.get(strategy)
    sel = entry(task, questions, weak_gens, icl_gens, **chosen(entry, available))
    summary = {**control_of(entry), **metrics.selection_diagnostics(task, sel, questions, gold=gold)}
    summary.update({f"skipped_{k}": v for k, v in sel.skipped.items()})
    summary.update(getattr(sel, "counts", None) or {})   # a rule's own counts (relabel: n_relabelled)
    golds = metrics.golds_of(gold if gold is not None else questions)
    if golds:
        summary["weak_accuracy"] = metrics.greedy_accuracy(task, weak_gens if weak_labels is None else weak_labels,
                                                           golds)
    return sel, summary


def full_weak_records(task: Task, questions: Sequence[dict], weak_gens: Sequence[dict]) -> list[dict]:
    """The full-weak-fine-tuning baseline's SFT set: every weak answer (the paper's naive W2S)."""
    return full_weak_sft(task, questions, weak_gens)


def stage1_overlap(ids: Iterable[str], selected: Iterable[str]) -> dict:
    """How much a later signal (Stage II pairs, Stage III labels) covers the questions Stage I
    already learnt from: a signal that only relabels those teaches little new."""
    ids, selected = {str(i) for i in ids}, {str(i) for i in selected}
    return {"n": len(ids), "in_stage1": len(ids & selected),
            "share_in_stage1": len(ids & selected) / len(ids) if ids else None}


def write_selection(out_dir: str | os.PathLike, sel, summary: dict) -> None:
    """OUT/{weak,icl,hybrid}.jsonl (SFT records) and OUT/summary.json."""
    out_dir = Path(out_dir)
    for variant in ("weak", "icl", "hybrid"):
        write_jsonl(out_dir / f"{variant}.jsonl", getattr(sel, variant))
    write_json(out_dir / "summary.json", summary)


# ---- Stage II ------------------------------------------------------------------
def preference_pairs(task: Task, questions: Sequence[dict], weak_gens: Sequence[dict], samples: Sequence[dict],
                     *, min_confidence: float = 0.6, flip_confidence: float = 0.8, max_pairs: int = 1,
                     seed: int = 42, gold: Sequence[dict] | None = None, strategy: str = "paper",
                     stage1_ids: Sequence[str] | None = None, **available):
    """Preference pairs by the registered `strategy` (`stage2.pairs`; default the paper's rule)
    and their summary (vote confidences of every question, and with `gold`, the correctness of
    each side). Of `available` (by name: `icl_gens`, `min_support`, `prefer`, ...), the strategy
    gets what its entry declares. `stage1_ids` (the questions Stage I selected) adds how many
    pairs fall on them (`stage1_overlap`). Returns (pairs, summary)."""
    entry = PAIRS.get(strategy)
    votes = voting.majority_vote(task, samples)
    built = entry(task, questions, weak_gens, samples, min_confidence=min_confidence,
                  flip_confidence=flip_confidence, max_pairs=max_pairs, seed=seed, votes=votes,
                  **chosen(entry, available))
    summary = {**control_of(entry), "n_questions": len(questions), "n_pairs": len(built),
               "n_questions_with_pairs": len({p["id"] for p in built}),
               "weak_chosen": sum(p["weak_side"] == "chosen" for p in built),
               "weak_rejected": sum(p["weak_side"] == "rejected" for p in built),
               "n_samples_per_question": max((v.n for v in votes.values()), default=0),
               "confidences": [round(v.confidence, 4) for v in votes.values()]}
    summary.update({k: v for k, v in metrics.pair_diagnostics(task, built, questions if gold is None else gold).items()
                    if k != "n_pairs"})
    if stage1_ids is not None:
        summary["stage1_overlap"] = stage1_overlap({p["id"] for p in built}, stage1_ids)
    return built, summary


# ---- Stage III -----------------------------------------------------------------
def stage3_questions(questions: Sequence[dict], max_questions: int | None, seed: int, round_: int) -> list[dict]:
    """The unlabeled questions of a Stage III round: all, or `max_questions` of them drawn with a
    generator seeded by (seed, round), in their file order."""
    if not max_questions or max_questions >= len(questions):
        return list(questions)
    keep = set(seeded_rng(seed, "stage3", round_).sample(range(len(questions)), max_questions))
    return [q for i, q in enumerate(questions) if i in keep]


def stage3_labels(task: Task, questions: Sequence[dict], samples: Sequence[dict], weak_gens: Sequence[dict],
                  icl_gens: Sequence[dict], *, reward: str = "agreement", gold: Sequence[dict] | None = None,
                  stage1_ids: Sequence[str] | None = None, **rule_settings):
    """GRPO records {id, prompt, pseudo_label} under the pseudo-label rule of `reward` (questions
    without a label are left out) and the round's diagnostics (`gold`, hidden: precision only).
    Returns (records, summary)."""
    rule = REWARDS.get(reward).obj.pseudo_label_rule
    labels = pseudo_labels.pseudo_labels(rule, task, questions, samples, weak_gens, icl_gens, **rule_settings)
    records = [{"id": str(q["id"]), "prompt": task.prompt(q["question"]), "pseudo_label": labels[str(q["id"])]}
               for q in questions if str(q["id"]) in labels]
    summary = {"reward": reward, "rule": rule, **control_of(*reward_entries(reward)),
               **pseudo_labels.diagnostics(task, questions, samples, labels, gold=gold)}
    if stage1_ids is not None:  # labels that only repeat what Stage I learnt teach little new
        summary["stage1_overlap"] = stage1_overlap([r["id"] for r in records], stage1_ids)
    return records, summary


def stage3_round_summary(labels_summary: dict, grpo_log: Sequence[dict], dev_accuracy: float | None) -> dict:
    """One round of the collapse monitor: pseudo-label coverage and precision, the samples'
    majority share and answer entropy, GRPO's mean reward (over its steps, and first/last step)
    and the greedy dev accuracy of the round's policy."""
    rewards = [e["reward"] for e in grpo_log if e.get("reward") is not None]
    zero_std = [e["zero_std"] for e in grpo_log if e.get("zero_std") is not None]
    return {"coverage": labels_summary.get("coverage"), "pseudo_label_precision": labels_summary.get("precision"),
            "n_labelled": labels_summary.get("n_labelled"), "n_questions": labels_summary.get("n_questions"),
            "majority_share": labels_summary.get("majority_share"),
            "answer_entropy": labels_summary.get("answer_entropy"),
            "majority_accuracy": labels_summary.get("majority_accuracy"),
            "mean_reward": sum(rewards) / len(rewards) if rewards else None,
            "reward_first": rewards[0] if rewards else None, "reward_last": rewards[-1] if rewards else None,
            "steps": len(rewards), "reward_curve": [round(r, 4) for r in rewards], "dev_accuracy": dev_accuracy,
            # the share of GRPO groups with one reward for all completions (no gradient from them)
            "zero_std_share": sum(zero_std) / len(zero_std) if zero_std else None,
            "stage1_overlap": (labels_summary.get("stage1_overlap") or {}).get("share_in_stage1")}


def control_of(*entries) -> dict:
    """{"control": KIND} when one of `entries` is a control: it says so (`fn.control`, "gold" or
    "random": w2s.method.controls) or it reads the hidden gold (declares `hidden_gold`, "gold");
    else {} (label-free)."""
    for entry in entries:
        kind = getattr(entry.obj, "control", None) or ("gold" if "hidden_gold" in entry.needs else None)
        if kind:
            return {"control": kind}
    return {}


def reward_entries(reward: str) -> tuple:
    """A Stage III reward's entry and its pseudo-label rule's."""
    entry = REWARDS.get(reward)
    return entry, LABEL_RULES.get(entry.obj.pseudo_label_rule)


def stage3_summary(rounds: Sequence[dict], reward: str, start: str, start_dev_accuracy: float | None) -> dict:
    """Stage III's summary: the per-round monitor, the round m_rl is (by dev accuracy, round 0
    being the start policy kept; else the last round) and its numbers at the top level."""
    pick = choose_round(rounds, start_dev_accuracy)
    # round 0, the start policy kept, has no labels nor GRPO of its own: the same keys, empty
    chosen = rounds[pick - 1] if pick else {**dict.fromkeys(rounds[-1] if rounds else ()),
                                            "dev_accuracy": start_dev_accuracy}
    return {"reward": reward, **control_of(*reward_entries(reward)), "start": start,
            "start_dev_accuracy": start_dev_accuracy, "chosen_round": pick,
            "chosen_by": "dev accuracy" if all(r.get("dev_accuracy") is not None for r in rounds) else "last round",
            **{k: v for k, v in chosen.items() if k not in ("round", "reward_curve")},
            "rounds": list(rounds)}


def stage3_round(labels_summary_file: str | os.PathLike, model_dir: str | os.PathLike,
                 dev_file: str | os.PathLike | None) -> dict:
    """One round's monitor row from its files: labels summary, GRPO log (lineage), dev score."""
    dev = Path(dev_file) if dev_file else None
    return stage3_round_summary(read_json(labels_summary_file),
                                (read_lineage(model_dir) or {}).get("grpo_log") or [],
                                read_json(dev).get("accuracy") if dev and dev.exists() else None)


def link_model(link: str | os.PathLike, target_name: str) -> None:
    """`link` -> the sibling model directory `target_name` (relative, so the run can move),
    swapped in atomically; a link never replaces what it points to."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    os.replace(tmp, link)


def choose_round(rounds: Sequence[dict], start_dev_accuracy: float | None = None) -> int:
    """The round (1-based) whose policy has the best dev accuracy, the earliest on a tie (early
    stopping), where round 0 is the start policy kept (when its dev accuracy is known): no round
    that does not beat it is chosen. The last round when there is no dev split. Never test."""
    devs = [r.get("dev_accuracy") for r in rounds]
    if not rounds or any(d is None for d in devs):
        return len(rounds)
    if start_dev_accuracy is not None:
        devs = [start_dev_accuracy] + devs
        return max(range(len(devs)), key=lambda i: (devs[i], -i))
    return max(range(len(devs)), key=lambda i: (devs[i], -i)) + 1


# ---- training ------------------------------------------------------------------
def sft_records(task: Task, questions: Iterable[dict], field: str = "solution") -> list[dict]:
    """SFT records from gold solutions (the weak model's training set, the gold-SFT ceiling)."""
    return [{"id": str(q["id"]), "prompt": task.prompt(q["question"]), "completion": task.completion(q[field])}
            for q in questions]


def gold_sft_records(task: Task, questions: Sequence[dict], hidden_gold: Sequence[dict]) -> list[dict]:
    """The gold-SFT ceiling's training set: the hidden gold solutions of the unlabeled questions."""
    text = {r["id"]: r["question"] for r in questions}
    rows = [{**r, "question": text[r["id"]]} for r in hidden_gold if r.get("solution") and r["id"] in text]
    if not rows:
        raise ValueError("the gold_sft baseline needs gold solutions for the unlabeled questions "
                         "(data.hidden_gold, or solutions inside data.unlabeled)")
    return sft_records(task, rows)


def train(kind: str, model: str, data: str | os.PathLike, out: str | os.PathLike, settings: dict,
          launcher: str | None = None, job_file: str | os.PathLike | None = None,
          empty_reason: str | None = None) -> dict:
    """Train `kind` ("sft" | "preference" | "grpo") from `model` on the records in `data` into `out`,
    in-process or under `launcher` (multi-GPU). An empty training set is the identity: `out`
    becomes an unchanged copy of `model`, marked untrained (`empty_reason` says why); when the
    run keeps LoRA adapters over a full model, that copy is LoRA's identity adapter (B = 0)."""
    if not read_records(data):
        reason = empty_reason or f"{data} is empty"
        log.warning("%s: the model is %s, unchanged", reason, model)
        if settings.get("lora") is not None and not settings.get("merge") and not is_adapter_dir(model):
            untrained_adapter(model, out, LoraSettings(**settings["lora"]), reason, seed=settings.get("seed", 0))
        else:
            untrained_copy(model, out, reason)
        return {"n_train": 0, "untrained": True}
    generation.unload()  # free the generation model's memory before training
    job = {"kind": kind, "model": str(model), "data": str(data), "out_dir": str(out), "settings": settings}
    if launcher:
        launch.launch_job(launcher, job, job_file or Path(out).parent / f".{Path(out).name}.job.json")
    else:
        launch.run_job(job)
    return {}
