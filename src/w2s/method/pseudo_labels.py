"""Stage III pseudo-labels: an answer per unlabeled question, from the method's own signals.

Pure functions over records. None of them takes gold: a pseudo-label is built from the policy's
k samples per question, the weak answers (D_weak) and the in-context answers (D_icl) only.
Gold enters in `diagnostics`, which scores labels that already exist.

    labels = agreement_labels(task, questions, samples, weak_gens, icl_gens, min_support=3)
    labels = majority_labels(task, questions, samples, min_confidence=0.6)
    diagnostics(task, questions, samples, labels, gold=hidden)   # coverage, precision, ...

A sample counts with its `usable_answer` (truncated or answerless samples never support an
answer), and answers are compared with the task's equivalence, as in `voting`.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from w2s.method.metrics import golds_of
from w2s.method.registry import LABEL_RULES
from w2s.method.selection import first_generation, select_consistent
from w2s.method.voting import Vote, usable_answer, vote
from w2s.records import group_by_id
from w2s.tasks.base import Task

PREFER = ("weak", "icl", "most_votes")


def support(task: Task, v: Vote, answer: str) -> int:
    """How many of the k samples give `answer` (an equivalent one)."""
    return sum(1 for a in v.answers if a and task.equivalent(a, answer)) if answer else 0


@LABEL_RULES.register("agreement", params=("min_support", "prefer"))
def agreement_labels(task: Task, questions: Sequence[dict], samples: Iterable[dict],
                     weak_gens: Iterable[dict], icl_gens: Iterable[dict], *, min_support: int = 3,
                     prefer: str = "weak") -> dict[str, str]:
    """{id: label}: the weak or in-context answer that at least `min_support` of the question's
    samples give. `prefer` decides when both qualify (and differ): the weak one, the in-context
    one, or the one more samples give (`most_votes`; a tie goes to weak). Questions where
    neither qualifies get no label."""
    if min_support < 1:
        raise ValueError(f"min_support must be >= 1, got {min_support}")
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)}, got {prefer!r}")
    groups = group_by_id(samples)
    weak, icl = first_generation(weak_gens), first_generation(icl_gens)
    out: dict[str, str] = {}
    for q in questions:
        qid = str(q["id"])
        if qid not in groups:
            continue
        v = vote(task, groups[qid])
        cands = {}
        for name, gens in (("weak", weak), ("icl", icl)):
            a = usable_answer(task, gens.get(qid))
            n = support(task, v, a)
            if n >= min_support:
                cands[name] = (a, n)
        if not cands:
            continue
        if len(cands) == 1:
            out[qid] = next(iter(cands.values()))[0]
        elif prefer == "most_votes":
            out[qid] = max(cands["weak"], cands["icl"], key=lambda c: c[1])[0]  # max keeps the first on a tie
        else:
            out[qid] = cands[prefer][0]
    return out


@LABEL_RULES.register("majority", params=("min_confidence",))
def majority_labels(task: Task, questions: Sequence[dict], samples: Iterable[dict],
                    weak_gens: Iterable[dict] = (), icl_gens: Iterable[dict] = (), *,
                    min_confidence: float = 0.6) -> dict[str, str]:
    """{id: label}: the majority answer of the question's samples when its share of ALL k samples
    (truncated and answerless ones count in the denominator) is at least `min_confidence`.
    The weak and in-context answers are accepted and ignored (one call shape for every rule)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    groups = group_by_id(samples)
    out: dict[str, str] = {}
    for q in questions:
        qid = str(q["id"])
        if qid in groups:
            v = vote(task, groups[qid])
            if v.answer is not None and v.confidence >= min_confidence:
                out[qid] = v.answer
    return out


@LABEL_RULES.register("relabel", params=("min_confidence",))
def relabel_labels(task: Task, questions: Sequence[dict], samples: Iterable[dict],
                   weak_gens: Iterable[dict] = (), icl_gens: Iterable[dict] = (), *,
                   min_confidence: float = 0.6) -> dict[str, str]:
    """{id: label} for the questions Stage I left out (the weak and in-context answers are not
    equivalent, or one is missing): the fine-tuned strong model's majority answer when its share
    of all k samples is at least `min_confidence` (Shi et al., 2025, arXiv 2503.04249: the strong
    model relabels what weak supervision could not settle). Stage I's kept questions get no label:
    Stage I already trained on them."""
    kept = set(select_consistent(task, questions, weak_gens, icl_gens).ids)   # Stage I's own rule
    return majority_labels(task, [q for q in questions if str(q["id"]) not in kept], samples,
                           min_confidence=min_confidence)


def pseudo_labels(rule: str, task: Task, questions: Sequence[dict], samples: Sequence[dict],
                  weak_gens: Sequence[dict], icl_gens: Sequence[dict], **settings) -> dict[str, str]:
    """Labels under the registered `rule` (`LABEL_RULES`); of `settings`, each rule reads the ones
    its entry declares (one config section for all rules; a missing one takes the rule's default)."""
    entry = LABEL_RULES.get(rule)
    return entry(task, questions, samples, weak_gens, icl_gens,
                 **{k: settings[k] for k in (*entry.params, *entry.needs) if k in settings})



def answer_entropy(v: Vote) -> float:
    """Entropy (nats) of the k samples' answer distribution: one outcome per equivalence group,
    plus one for "no usable answer". 0 = every sample says the same thing."""
    counts = [n for _, n in v.groups] + [v.n - v.n_valid]
    return -sum(c / v.n * math.log(c / v.n) for c in counts if c) if v.n else 0.0


def diagnostics(task: Task, questions: Sequence[dict], samples: Iterable[dict], labels: dict[str, str],
                gold: Sequence[dict] | None = None) -> dict:
    """The collapse monitor, per round: coverage (labelled / questions), majority share and
    answer entropy of the samples (means over questions), and, with hidden `gold` (question
    records with `answer`), the labels' precision and how often the samples' majority is right.
    The only function here that sees gold, and it only scores."""
    groups = group_by_id(samples)
    votes = [vote(task, groups[str(q["id"])]) for q in questions if str(q["id"]) in groups]
    n = len(questions)
    out: dict = {"n_questions": n, "n_labelled": len(labels), "coverage": len(labels) / n if n else 0.0,
                 "majority_share": sum(v.confidence for v in votes) / len(votes) if votes else None,
                 "answer_entropy": sum(answer_entropy(v) for v in votes) / len(votes) if votes else None}
    golds = golds_of(gold or ())
    graded = [qid for qid in labels if qid in golds]
    if graded:
        out["precision"] = sum(task.matches(labels[qid], golds[qid]) for qid in graded) / len(graded)
        out["n_graded"] = len(graded)
    scored = [(qid, v) for qid, v in zip((str(q["id"]) for q in questions if str(q["id"]) in groups), votes)
              if qid in golds]
    if scored:
        out["majority_accuracy"] = sum(bool(v.answer) and task.matches(v.answer, golds[qid])
                                       for qid, v in scored) / len(scored)
    return out
