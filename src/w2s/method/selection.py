"""Stage I data: full weak fine-tuning and final-answer-consistency selection.

SFT records always use the task's ZERO-SHOT prompt of the question and `task.completion` of
the response, whatever prompt produced the response (the in-context generations came from
few-shot prompts, but the strong model is trained zero-shot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from w2s.method.voting import usable_answer
from w2s.records import group_by_id
from w2s.tasks.base import Task


@dataclass
class Selection:
    weak: list[dict]                 # SFT records from the weak generations of selected ids
    icl: list[dict]                  # SFT records from the in-context generations
    hybrid: list[dict]               # both, interleaved per question (ids repeat; `source` tells)
    ids: list[str]                   # selected question ids, in question order
    answers: dict[str, str]          # id -> the agreed answer (weak side's string)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count


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


def select_consistent(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict],
                      icl_gens: Iterable[dict]) -> Selection:
    """Keep the questions where the weak and in-context final answers are equivalent.

    Skipped: a side missing, an empty answer, or a truncated response (finish_reason
    "length"): none of these is evidence of agreement.
    """
    weak, icl = first_generation(weak_gens), first_generation(icl_gens)
    sel = Selection([], [], [], [], {}, {"missing": 0, "empty": 0, "disagree": 0})
    pending = []
    for q in questions:
        qid = str(q["id"])
        if qid not in weak or qid not in icl:
            sel.skipped["missing"] += 1
            continue
        a, b = usable_answer(task, weak[qid]), usable_answer(task, icl[qid])
        if not a or not b:
            sel.skipped["empty"] += 1
            continue
        pending.append((q, a, b))
    if pending:
        task.equivalent_many([(a, b) for _, a, b in pending])  # warm the cache in one round-trip
    for q, a, b in pending:
        qid = str(q["id"])
        if not task.equivalent(a, b):
            sel.skipped["disagree"] += 1
            continue
        w, i = sft_record(task, q, weak[qid], "weak"), sft_record(task, q, icl[qid], "icl")
        sel.weak.append({k: v for k, v in w.items() if k != "source"})
        sel.icl.append({k: v for k, v in i.items() if k != "source"})
        sel.hybrid.extend([w, i])
        sel.ids.append(qid)
        sel.answers[qid] = a
    return sel
