"""Stage II preference pairs from the weak model's agreements and mistakes (the paper's rule).

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

from w2s.method.selection import first_generation
from w2s.method import voting
from w2s.method.voting import Vote, is_truncated
from w2s.records import group_by_id
from w2s.tasks.base import Task, seeded_rng


def build_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict],
                samples: Iterable[dict], min_confidence: float = 0.6, flip_confidence: float = 0.8,
                max_pairs: int = 1, seed: int = 42, votes: dict[str, Vote] | None = None) -> list[dict]:
    """Preference records {id, prompt, chosen, rejected, weak_side, confidence,
    majority_answer, chosen_answer, rejected_answer}, in question order. `votes` are the
    samples' `voting.majority_vote`, when the caller has it already."""
    if not 0 <= min_confidence <= 1 or not 0 <= flip_confidence <= 1:
        raise ValueError("confidences must lie in [0, 1]")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
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
