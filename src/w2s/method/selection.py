"""Stage I data: full weak fine-tuning, and the selection strategies (`stage1.selection`):
`consistency` (the paper), `confidence` (the strong model's self-consistency), `random` (a
control), `relabel` (from iteration 2 on, the fine-tuned strong models relabel what the
consistency check discarded). Each is one function registered in `registry.SELECTION`, called as
`fn(task, questions, weak_gens, icl_gens, **declared)` and returning a `Selection`; `declared`
holds what its entry declares (`random`: `seed`; `confidence`: `icl_samples` and
`confidence_threshold`; `relabel`: `iteration`, `d_weak`, `d_icl`).

SFT records always use the task's ZERO-SHOT prompt of the question and `task.completion` of
the response, whatever prompt produced the response (the in-context generations came from
few-shot prompts, but the strong model is trained zero-shot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from w2s.method.registry import SELECTION
from w2s.method.voting import usable_answer
from w2s.records import group_by_id
from w2s.tasks.base import Task, seeded_rng


@dataclass
class Selection:
    weak: list[dict]                 # SFT records from the weak generations of selected ids
    icl: list[dict]                  # SFT records from the in-context generations
    hybrid: list[dict]               # both, interleaved per question (ids repeat; `source` tells)
    ids: list[str]                   # selected question ids, in question order
    answers: dict[str, str]          # id -> the agreed answer (weak side's string)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    counts: dict[str, int] = field(default_factory=dict)   # a rule's own counts, into its summary


def first_generation(gens: Iterable[dict]) -> dict[str, dict]:
    """{id: the generation with the lowest sample_index} (the greedy one)."""
    return {qid: rs[0] for qid, rs in group_by_id(gens).items()}


def sft_record(task: Task, question: dict, gen: dict, source: str | None = None) -> dict:
    rec = {"id": str(question["id"]), "prompt": task.prompt(question["question"]),
           "completion": task.completion(gen.get("response") or "")}
    if source:
        rec["source"] = source
    return rec


def question_from_prompt(task: Task, prompt: str) -> str | None:
    """Recover the target question from a zero-shot or few-shot prompt of this task
    (the last "Question: ...\\nAnswer:" block), or None if the prompt has another shape."""
    marker = "\x00"
    prefix, _, suffix = task.prompt(marker).partition(marker)
    if not prompt.endswith(suffix):
        return None
    body = prompt[:len(prompt) - len(suffix)] if suffix else prompt
    start = body.rfind(prefix) if prefix else 0
    if start == -1:
        return None
    return body[start + len(prefix):]


def questions_from_generations(task: Task, gens: Iterable[dict]) -> list[dict]:
    """Question records recovered from generation records: their `question` / `gold` /
    `answer` fields when present, else the question parsed out of the prompt."""
    out: dict[str, dict] = {}
    for g in gens:
        qid = str(g["id"])
        rec = out.setdefault(qid, {"id": qid})
        if "question" not in rec:
            q = g.get("question") if isinstance(g.get("question"), str) else None
            if q is None and isinstance(g.get("prompt"), str):
                q = question_from_prompt(task, g["prompt"])
            if q is not None:
                rec["question"] = q
        if "answer" not in rec:
            for key in ("gold", "answer"):
                if g.get(key) not in (None, ""):
                    rec["answer"] = str(g[key])
                    break
    return list(out.values())


def full_weak_sft(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict]) -> list[dict]:
    """Baseline "full weak fine-tuning": every weak response, as SFT records (question order)."""
    weak = first_generation(weak_gens)
    return [sft_record(task, q, weak[str(q["id"])]) for q in questions if str(q["id"]) in weak]


def _answer_pairs(task: Task, questions: Sequence[dict], weak: dict[str, dict], icl: dict[str, dict],
                  skipped: dict[str, int]) -> list[tuple[dict, str, str]]:
    """(question, weak answer, in-context answer) for the questions where both sides have a
    usable answer; the others counted in `skipped` as "missing" or "empty"."""
    out = []
    for q in questions:
        qid = str(q["id"])
        if qid not in weak or qid not in icl:
            skipped["missing"] += 1
            continue
        a, b = usable_answer(task, weak[qid]), usable_answer(task, icl[qid])
        if not a or not b:
            skipped["empty"] += 1
            continue
        out.append((q, a, b))
    return out


def _add(task: Task, sel: Selection, q: dict, answer: str, weak: dict | None, icl: dict) -> None:
    """Select question `q` with its solutions (no weak record when `weak` is None)."""
    qid = str(q["id"])
    recs = ([sft_record(task, q, weak, "weak")] if weak is not None else []) + [sft_record(task, q, icl, "icl")]
    for r in recs:
        getattr(sel, r["source"]).append({k: v for k, v in r.items() if k != "source"})
    sel.hybrid.extend(recs)
    sel.ids.append(qid)
    sel.answers[qid] = answer


@SELECTION.register("consistency")
def select_consistent(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict],
                      icl_gens: Iterable[dict], **context) -> Selection:
    """Final-answer consistency, the paper's Stage I rule (Yang, Ma, Liu 2024, "learn from
    positive samples"): keep the questions where the weak model's and the in-context strong
    model's final answers are equivalent, with both solutions.

    Skipped: a side missing, an empty answer, or a truncated response (finish_reason
    "length"): none of these is evidence of agreement.
    """
    weak, icl = first_generation(weak_gens), first_generation(icl_gens)
    sel = Selection([], [], [], [], {}, {"missing": 0, "empty": 0, "disagree": 0})
    pending = _answer_pairs(task, questions, weak, icl, sel.skipped)
    if pending:
        task.equivalent_many([(a, b) for _, a, b in pending])  # warm the cache in one round-trip
    for q, a, b in pending:
        qid = str(q["id"])
        if not task.equivalent(a, b):
            sel.skipped["disagree"] += 1
            continue
        _add(task, sel, q, a, weak[qid], icl[qid])
    return sel


@SELECTION.register("confidence", params=("confidence_threshold",), needs=("icl_samples",))
def select_confident(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], icl_gens: Iterable[dict],
                     *, icl_samples: Iterable[dict] | None = None, confidence_threshold: float = 0.75,
                     **context) -> Selection:
    """The strong model's own confidence instead of the weak model's agreement (self-consistency
    filtering as in LMSI, Huang et al. 2022, "Large Language Models Can Self-Improve"; Wang et al.
    2023): keep the questions where at least `confidence_threshold` of the strong model's k in-context
    samples (`icl_samples`, same few-shot prompts, T > 0) reach its greedy in-context answer.

    A threshold rather than a top-N: it reads the same at any k and any data size (with k = 4,
    0.75 = three samples of four). Truncated and answerless samples count in the denominator, as
    in `voting`. The selected solutions are the in-context one, and the weak one only where its
    answer is the same (no selected record teaches another answer). Skipped: as `consistency`,
    with "empty" counting the in-context side only, and "unconfident".
    """
    if icl_samples is None:
        raise ValueError("the confidence selection needs the strong model's in-context samples "
                         "(stage1.confidence_samples; `w2s select --icl-samples`)")
    if not 0 <= confidence_threshold <= 1:
        raise ValueError(f"confidence_threshold must lie in [0, 1], got {confidence_threshold}")
    weak, icl, groups = first_generation(weak_gens), first_generation(icl_gens), group_by_id(icl_samples)
    sel = Selection([], [], [], [], {}, {"missing": 0, "empty": 0, "unconfident": 0})
    pending = []
    for q in questions:
        qid = str(q["id"])
        if qid not in icl or qid not in groups:
            sel.skipped["missing"] += 1
            continue
        answer = usable_answer(task, icl[qid])
        if not answer:
            sel.skipped["empty"] += 1
            continue
        pending.append((q, answer, [usable_answer(task, g) for g in groups[qid]]))
    if pending:  # warm the cache in one round-trip
        task.equivalent_many([(v, answer) for _, answer, votes in pending for v in votes if v])
    for q, answer, votes in pending:
        qid = str(q["id"])
        share = sum(bool(v) and task.equivalent(v, answer) for v in votes) / len(votes)
        if share < confidence_threshold:
            sel.skipped["unconfident"] += 1
            continue
        w = usable_answer(task, weak.get(qid))
        _add(task, sel, q, answer, weak[qid] if w and task.equivalent(w, answer) else None, icl[qid])
    return sel


@SELECTION.register("random", needs=("seed",))
def select_random(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], icl_gens: Iterable[dict],
                  *, seed: int = 0, **context) -> Selection:
    """A control for `consistency`: as many questions as it would select, drawn at random
    (seeded) among those where both sides have a usable answer, with their weak and in-context
    solutions whatever their answers. It asks whether agreement matters or only the amount of data.

    `answers` holds the weak side's answer (what the weak variant teaches). Skipped: "missing",
    "empty" as `consistency`, and "not_drawn".
    """
    weak_gens, icl_gens = list(weak_gens), list(icl_gens)
    n = len(select_consistent(task, questions, weak_gens, icl_gens).ids)
    weak, icl = first_generation(weak_gens), first_generation(icl_gens)
    sel = Selection([], [], [], [], {}, {"missing": 0, "empty": 0, "not_drawn": 0})
    pool = _answer_pairs(task, questions, weak, icl, sel.skipped)
    drawn = set(seeded_rng(seed, "random_selection").sample(range(len(pool)), n))
    for i, (q, a, _) in enumerate(pool):  # question order, like every selection
        if i in drawn:
            _add(task, sel, q, a, weak[str(q["id"])], icl[str(q["id"])])
    sel.skipped["not_drawn"] = len(pool) - n
    return sel


@SELECTION.register("relabel", needs=("iteration", "d_weak", "d_icl"))
def select_relabel(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], icl_gens: Iterable[dict],
                   *, iteration: int, d_weak: Iterable[dict], d_icl: Iterable[dict], **context) -> Selection:
    """Re-labelling the discarded questions with the fine-tuned strong model (Shi et al., 2025,
    "How to Mitigate Overfitting in Weak-to-strong Generalization?", arXiv 2503.04249): iteration 1
    is `consistency`. From iteration 2 on, the questions where the ORIGINAL weak and in-context
    answers (`d_weak`, `d_icl`) agree stay, with their original solutions (Shi et al.'s set A:
    filtered weak supervision), and the questions that check discarded are re-answered by the
    previous iteration's two fine-tuned strong models (this iteration's columns, weak- and
    icl-variant) and kept when the two agree (set B; two models trained on different solutions
    agreeing is the confidence, as Stage I's own check), with their solutions.

    Unlike `consistency` at iteration 2 (which re-asks the fine-tuned models about every
    question), set A is never relabelled: only the hard questions the weak supervision could not
    settle get the strong model's answers. `counts`: n_kept (set A), n_relabelled (set B);
    `skipped` counts the discarded questions set B also leaves out ("missing", "empty", "disagree").
    """
    if not isinstance(iteration, int) or iteration < 1:
        raise ValueError(f"iteration must be a whole number >= 1, got {iteration!r}")
    d_weak, d_icl = list(d_weak), list(d_icl)
    if iteration == 1:
        first = select_consistent(task, questions, d_weak, d_icl)
        first.counts = {"n_kept": len(first.ids), "n_relabelled": 0}
        return first
    kept = set(select_consistent(task, questions, d_weak, d_icl).ids)
    discarded = [q for q in questions if str(q["id"]) not in kept]
    fresh = select_consistent(task, discarded, weak_gens, icl_gens)   # the fine-tuned models agree
    relabelled = set(fresh.ids)
    columns = {"kept": (first_generation(d_weak), first_generation(d_icl)),
               "relabelled": (first_generation(weak_gens), first_generation(icl_gens))}
    sel = Selection([], [], [], [], {}, dict(fresh.skipped), {"n_kept": len(kept), "n_relabelled": len(relabelled)})
    for q in questions:  # question order, like every selection
        qid = str(q["id"])
        if qid in kept or qid in relabelled:
            weak, icl = columns["kept" if qid in kept else "relabelled"]
            _add(task, sel, q, usable_answer(task, weak[qid]), weak[qid], icl[qid])
    return sel
