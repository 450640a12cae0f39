"""Oracle and null controls: what bounds any label-free signal at the same budget.

A control is NOT label-free: the oracles read the hidden gold answers of the unlabeled questions
(the named input `hidden_gold`, which the pipeline gives only to entries that declare it), and
the report titles their runs CONTROL. They answer "does this signal add nothing, or can nothing
move greedy accuracy here?":

    stage2.pairs: gold     DPO on pairs labelled by gold (the ceiling of any pair rule)
    stage3.reward: gold    GRPO rewarded by gold (the ceiling of any pseudo-label)
    stage3.reward: random  GRPO rewarded by a coin flip (Shao et al., 2025, "Spurious Rewards"):
                           what the optimizer does with no signal at all

Each function keeps its registry's call shape, so the pipeline runs them like any entry.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from w2s.method.metrics import golds_of
from w2s.method.pairs import _check, _distinct, _grouped, sampled_pairs
from w2s.method.registry import LABEL_RULES, PAIRS
from w2s.method.rewards import _reward, label_match
from w2s.method.voting import Vote
from w2s.tasks.base import Task, seeded_rng


@PAIRS.register("gold", needs=("hidden_gold",))
def gold_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], samples: Iterable[dict],
               min_confidence: float = 0.6, flip_confidence: float = 0.8, max_pairs: int = 1, seed: int = 42,
               votes: dict[str, Vote] | None = None, *, hidden_gold: Sequence[dict]) -> list[dict]:
    """CONTROL (oracle): chosen = an M_plus sample whose answer is the gold answer, rejected = one
    whose answer is not (answerless samples included, truncated ones never), up to `max_pairs`
    per question, drawn with a generator seeded by (seed, id). The same samples as every pair
    rule; only the labels are the truth. weak_side is "none"; the confidences are unused."""
    _check(min_confidence, flip_confidence, max_pairs)
    golds = golds_of(hidden_gold)
    sample_groups, votes = _grouped(task, samples, votes)
    out = []
    for q in questions:
        qid = str(q["id"])
        if qid not in golds or qid not in votes:
            continue
        right, wrong = [], []
        for completion, answer, _ in _distinct(task, sample_groups[qid], votes[qid].answers, set()):
            (right if answer and task.equivalent(answer, golds[qid]) else wrong).append((completion, answer))
        out.extend(sampled_pairs(task, q, [(c, r) for c in right for r in wrong], votes[qid], max_pairs,
                                 seeded_rng(seed, "gold_pairs", qid)))
    return out


gold_pairs.control = "gold"


@LABEL_RULES.register("gold", needs=("hidden_gold",))
def gold_labels(task: Task, questions: Sequence[dict], samples: Iterable[dict], weak_gens: Iterable[dict] = (),
                icl_gens: Iterable[dict] = (), *, hidden_gold: Sequence[dict]) -> dict[str, str]:
    """CONTROL: {id: the hidden gold answer} for every question that has one (the samples and
    the weak / in-context answers are accepted and ignored)."""
    golds = golds_of(hidden_gold)
    return {str(q["id"]): golds[str(q["id"])] for q in questions if str(q["id"]) in golds}


@_reward("gold", rule="gold")
def gold(prompts, completions, pseudo_label, *, task: Task, finished=None, **kwargs) -> list[float]:
    """CONTROL (oracle): 1 when the completion's final answer is the gold answer; the ceiling of
    any pseudo-label reward at the same budget (the label column holds gold, `gold_labels`)."""
    return label_match(completions, pseudo_label, task, finished)


@_reward("random", rule="majority")
def random_reward(prompts, completions, pseudo_label, *, task: Task, finished=None, **kwargs) -> list[float]:
    """CONTROL (null; Shao et al., 2025, "Spurious Rewards: Rethinking Training Signals in RLVR"):
    1 or 0 by a fair coin, independent of correctness, on the same questions the majority reward
    trains on. The coin is a hash of (run seed, prompt, completion), so a completion's reward does
    not depend on its batch or process (TRL tells a reward no sample index) and another seed flips
    other coins; a completion cut by the length limit earns 0, as with every other reward (only the
    correctness signal is removed)."""
    key = "" if kwargs.get("seed") is None else f"{kwargs['seed']}\x00"
    out = []
    for i, (prompt, text) in enumerate(zip(prompts, completions, strict=True)):
        coin = hashlib.sha256(f"{key}{prompt}\x00{text}".encode()).digest()[0] & 1
        out.append(0.0 if finished is not None and not finished[i] else float(coin))
    return out


for _fn, _kind in ((gold, "gold"), (random_reward, "random")):
    _fn.control = _kind
