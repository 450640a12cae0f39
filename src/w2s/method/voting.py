"""Majority vote over k sampled solutions, answers grouped by the task's equivalence.

A sample votes only if it has a final answer and was not cut off by the length limit
(finish_reason == "length"): a truncated or answerless sample never forms a majority, but it
still counts in the denominator, so confidence = (size of the largest group) / (all samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from w2s.records import group_by_id
from w2s.tasks.base import Task


@dataclass
class Vote:
    answer: str | None          # representative answer of the largest group; None if no votes
    confidence: float           # largest group / n
    n_valid: int                # samples that voted
    n: int                      # all samples
    groups: list[tuple[str, int]] = field(default_factory=list)  # (representative, size), largest first
    answers: list[str] = field(default_factory=list)             # per sample ("" = did not vote)
    group_of: list[int] = field(default_factory=list)            # per sample: group index, -1 = no vote


def is_truncated(gen: dict) -> bool:
    return gen.get("finish_reason") == "length"


def usable_answer(task: Task, gen: dict | None) -> str:
    """The answer a generation counts with, in votes, selection and demonstrations alike:
    "" if it is missing, truncated (cut off by the length limit) or answerless."""
    if gen is None or is_truncated(gen):
        return ""
    return task.extract_answer(gen.get("response") or "")


def group_answers(task: Task, answers: Sequence[str]) -> tuple[list[str], list[int]]:
    """Group answers by equivalence. Returns (representatives, group index per answer, -1 for "").

    Identical strings are grouped first; then each distinct answer joins the first group
    whose representative it is equivalent to (equivalence is not assumed transitive).
    """
    distinct = list(dict.fromkeys(a for a in answers if a))
    if len(distinct) > 1:  # one round-trip instead of many (warms an expensive task's cache)
        task.equivalent_many([(x, y) for i, x in enumerate(distinct) for y in distinct[i + 1:]])
    reps: list[str] = []
    rep_of: dict[str, int] = {}
    for a in distinct:
        for gi, r in enumerate(reps):
            if task.equivalent(a, r):
                rep_of[a] = gi
                break
        else:
            rep_of[a] = len(reps)
            reps.append(a)
    return reps, [rep_of[a] if a else -1 for a in answers]


def vote(task: Task, samples: Sequence[dict]) -> Vote:
    """Majority vote over the samples of ONE question."""
    answers = [usable_answer(task, g) for g in samples]
    reps, group_of = group_answers(task, answers)
    sizes = [0] * len(reps)
    for g in group_of:
        if g >= 0:
            sizes[g] += 1
    # largest first; ties go to the group seen first (stable sort)
    order = sorted(range(len(reps)), key=lambda g: -sizes[g])
    remap = {old: new for new, old in enumerate(order)}
    groups = [(reps[g], sizes[g]) for g in order]
    n, n_valid = len(samples), sum(sizes)
    top = groups[0] if groups else (None, 0)
    return Vote(answer=top[0], confidence=(top[1] / n) if n else 0.0, n_valid=n_valid, n=n,
                groups=groups, answers=answers, group_of=[remap[g] if g >= 0 else -1 for g in group_of])


def majority_vote(task: Task, samples: Iterable[dict]) -> dict[str, Vote]:
    """{id: Vote} over generation records with several samples per id."""
    return {qid: vote(task, gens) for qid, gens in group_by_id(samples).items()}
