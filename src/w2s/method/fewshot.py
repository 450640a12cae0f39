"""Few-shot in-context prompts whose demonstrations are the weak model's own outputs
(the strong model's D_icl column in Stage I)."""

from __future__ import annotations

from typing import Iterable, Sequence

from w2s.method.selection import first_generation
from w2s.method.voting import usable_answer
from w2s.tasks.base import Task, seeded_rng


def zero_shot_prompts(task: Task, questions: Iterable[dict]) -> list[dict]:
    """{"id", "prompt"} per question, in the task's zero-shot format (also the format every SFT
    and preference record is trained in)."""
    return [{"id": str(q["id"]), "prompt": task.prompt(q["question"])} for q in questions]


def demo_pool(task: Task, questions: Sequence[dict], demos: Iterable[dict]) -> list[tuple[str, str, str]]:
    """(id, question, solution) for every weak output with a final answer that was not
    truncated, joined to its question by id (or carrying its own `question` field, for
    demonstrations drawn from another split than the target questions, e.g. at test time)."""
    text = {str(q["id"]): q["question"] for q in questions}
    pool = []
    for qid, g in first_generation(demos).items():
        if isinstance(g.get("question"), str):
            text.setdefault(qid, g["question"])
        if qid not in text or not usable_answer(task, g):
            continue
        pool.append((qid, text[qid], task.clean_response(g.get("response") or "").strip()))
    return pool


def build_fewshot_prompts(task: Task, questions: Sequence[dict], demos: Iterable[dict],
                          k: int, seed: int, demo_questions: Sequence[dict] | None = None) -> list[dict]:
    """One k-shot prompt per question: {"id", "prompt", "demo_ids"}.

    Demonstrations join `demo_questions` by id (default: the target `questions`; pass the
    unlabeled questions to prompt test questions with weak outputs on the unlabeled set).

    Demonstrations are drawn per question with a generator seeded by (seed, id), so a prompt
    does not depend on the order or number of the other questions. The target question is
    never its own demonstration (by id or by identical text). Fewer than k demos are used
    only when the pool is too small.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pool = demo_pool(task, questions if demo_questions is None else demo_questions, demos)
    out = []
    for q in questions:
        qid, text = str(q["id"]), q["question"]
        rng = seeded_rng(seed, "fewshot", qid)
        draw = rng.sample(pool, min(len(pool), k + 4))
        chosen = [d for d in draw if d[0] != qid and d[1] != text][:k]
        if len(chosen) < k:  # many duplicates of the target: scan the whole pool
            rest = [d for d in pool if d[0] != qid and d[1] != text and d not in chosen]
            rng.shuffle(rest)
            chosen += rest[:k - len(chosen)]
        out.append({"id": qid, "prompt": task.fewshot_prompt([(d[1], d[2]) for d in chosen], text),
                    "demo_ids": [d[0] for d in chosen]})
    return out
