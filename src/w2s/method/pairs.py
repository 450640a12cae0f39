"""Stage II preference pairs (`stage2.pairs`): `paper` (the weak model's agreements and
mistakes, below), `weak_rejected_only` (its mistakes only) and `self` (no weak side). Each is
one function registered in `registry.PAIRS`, called as
`fn(task, questions, weak_gens, samples, *, min_confidence, flip_confidence, max_pairs, seed,
votes)` and returning preference records {id, prompt, chosen, rejected, weak_side, confidence,
majority_answer, chosen_answer, rejected_answer} in question order.

The paper's rule:

For each question, with M_plus's k samples voted by equivalence (`voting`):
  * confidence < min_confidence (0.6)                    -> no pairs;
  * weak answer == majority                              -> chosen = weak response,
        rejected = a sample whose answer differs from the weak answer (none: no pair);
  * weak answer != majority and confidence >= flip (0.8) -> chosen = a majority sample,
        rejected = weak response;
  * otherwise                                            -> no pairs.
Up to `max_pairs` distinct pairs per question (1 for GSM8K, 3 for MATH in the paper), drawn
with a generator seeded by (seed, id). Truncated responses (finish_reason "length") are never
used as either side, a truncated weak response included. A weak response without a final
answer can only be rejected.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from w2s.method.registry import PAIRS, register
from w2s.method.selection import first_generation
from w2s.method import voting
from w2s.method.voting import Vote, is_truncated
from w2s.records import group_by_id
from w2s.tasks.base import Task, seeded_rng


def _check(min_confidence: float, flip_confidence: float, max_pairs: int) -> None:
    if not 0 <= min_confidence <= 1 or not 0 <= flip_confidence <= 1:
        raise ValueError("confidences must lie in [0, 1]")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")


@register(PAIRS, "paper")
def build_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict],
                samples: Iterable[dict], min_confidence: float = 0.6, flip_confidence: float = 0.8,
                max_pairs: int = 1, seed: int = 42, votes: dict[str, Vote] | None = None) -> list[dict]:
    """The paper's Stage II rule (Yang, Ma, Liu 2024, "learn from negative samples"): where
    M_plus's majority is confident, the weak response is chosen when it agrees with the majority
    and rejected when a very confident majority says otherwise (the module docstring has the rule).

    `votes` are the samples' `voting.majority_vote`, when the caller has it already.
    """
    _check(min_confidence, flip_confidence, max_pairs)
    weak = first_generation(weak_gens)
    sample_groups = group_by_id(samples)
    if votes is None:
        votes = {qid: voting.vote(task, gens) for qid, gens in sample_groups.items()}
    out = []
    for q in questions:
        qid = str(q["id"])
        if qid not in weak or qid not in votes:
            continue
        out.extend(_pairs_for_question(task, q, weak[qid], sample_groups[qid], votes[qid],
                                       min_confidence, flip_confidence, max_pairs, seed))
    return out


@register(PAIRS, "weak_rejected_only")
def weak_rejected_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict],
                        samples: Iterable[dict], min_confidence: float = 0.6, flip_confidence: float = 0.8,
                        max_pairs: int = 1, seed: int = 42, votes: dict[str, Vote] | None = None) -> list[dict]:
    """Only the paper's pairs whose rejected side is the weak response: the weak model's
    mistakes proper, as judged by a very confident majority (an ablation of `paper`, asking
    whether the pairs that confirm the weak answer help).

    The same records as `paper`'s with weak_side "rejected" (a subset of them, same seed).
    """
    return [p for p in build_pairs(task, questions, weak_gens, samples, min_confidence, flip_confidence,
                                   max_pairs, seed, votes) if p["weak_side"] == "rejected"]


@register(PAIRS, "self")
def self_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], samples: Iterable[dict],
               min_confidence: float = 0.6, flip_confidence: float = 0.8, max_pairs: int = 1, seed: int = 42,
               votes: dict[str, Vote] | None = None) -> list[dict]:
    """Pairs without the weak side, from M_plus's own votes only: chosen = a majority sample,
    rejected = a sample with another answer (or none), where the majority's share is at least
    `min_confidence` (self-consistency preference pairs as in Self-Consistency Preference
    Optimization, Prasad et al. 2024; the paper reports its variant without weak data as worse).

    weak_side is "none"; `flip_confidence` is unused. A sample whose text is the weak response
    is left out, so that no pair holds the weak response (questions without a weak response
    still get pairs). Truncated samples are never used.
    """
    _check(min_confidence, flip_confidence, max_pairs)
    weak = {qid: task.completion(g.get("response") or "") for qid, g in first_generation(weak_gens).items()}
    sample_groups = group_by_id(samples)
    if votes is None:
        votes = {qid: voting.vote(task, gens) for qid, gens in sample_groups.items()}
    out = []
    for q in questions:
        qid = str(q["id"])
        vote = votes.get(qid)
        if vote is None or vote.answer is None or vote.confidence < min_confidence:
            continue
        seen, majority, others = {weak.get(qid)}, [], []
        for g, answer, group in zip(sample_groups[qid], vote.answers, vote.group_of):
            completion = task.completion(g.get("response") or "")
            if is_truncated(g) or completion in seen:
                continue
            seen.add(completion)
            (majority if group == 0 else others).append((completion, answer))
        candidates = [(c, r) for c in majority for r in others]
        picked = seeded_rng(seed, "self_pairs", qid).sample(candidates, min(max_pairs, len(candidates)))
        prompt = task.prompt(q["question"])
        out.extend({"id": qid, "prompt": prompt, "chosen": c[0], "rejected": r[0], "weak_side": "none",
                    "confidence": vote.confidence, "majority_answer": vote.answer, "chosen_answer": c[1],
                    "rejected_answer": r[1]} for c, r in picked)
    return out


def _pairs_for_question(task: Task, question: dict, weak: dict, samples: list[dict], vote: Vote,
                        min_confidence: float, flip_confidence: float, max_pairs: int,
                        seed: int) -> list[dict]:
    if vote.answer is None or vote.confidence < min_confidence or is_truncated(weak):
        return []
    weak_answer = task.extract_answer(weak.get("response") or "")
    weak_completion = task.completion(weak.get("response") or "")
    # distinct usable samples (by completion text), with their answers
    seen, usable = {weak_completion}, []
    for g, answer in zip(samples, vote.answers):
        completion = task.completion(g.get("response") or "")
        if is_truncated(g) or completion in seen:
            continue
        seen.add(completion)
        usable.append((completion, answer))
    rng = seeded_rng(seed, "pairs", question["id"])
    if weak_answer and task.equivalent(weak_answer, vote.answer):
        side = "chosen"
        others = [(c, a) for c, a in usable if not (a and task.equivalent(a, weak_answer))]
        picked = rng.sample(others, min(max_pairs, len(others)))
        sides = [((weak_completion, weak_answer), p) for p in picked]
    elif vote.confidence >= flip_confidence:
        side = "rejected"
        majority = [(c, a) for c, a in usable if a and task.equivalent(a, vote.answer)
                    and not (weak_answer and task.equivalent(a, weak_answer))]
        picked = rng.sample(majority, min(max_pairs, len(majority)))
        sides = [(p, (weak_completion, weak_answer)) for p in picked]
    else:
        return []
    prompt = task.prompt(question["question"])
    return [{"id": str(question["id"]), "prompt": prompt, "chosen": c[0], "rejected": r[0],
             "weak_side": side, "confidence": vote.confidence, "majority_answer": vote.answer,
             "chosen_answer": c[1], "rejected_answer": r[1]} for c, r in sides]
