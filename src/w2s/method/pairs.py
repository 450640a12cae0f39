"""Stage II preference pairs (`stage2.pairs`): `paper` (the weak model's agreements and
mistakes, below), `weak_rejected_only` (its mistakes only), `self` (no weak side),
`agreement` (labels from weak/in-context answers that M_plus's samples support) and `scpo`
(most- against least-voted answer, weighted by the margin); `gold` is a control
(w2s.method.controls). Each is
one function registered in `registry.PAIRS`, called as
`fn(task, questions, weak_gens, samples, *, min_confidence, flip_confidence, max_pairs, seed,
votes, **context)` (context: `icl_gens`, `min_support`, `prefer` for `agreement`) and returning preference records {id, prompt, chosen, rejected, weak_side, confidence,
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

from w2s.method.registry import PAIRS
from w2s.method.pseudo_labels import agreement_labels, support
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


def _grouped(task: Task, samples: Iterable[dict], votes: dict[str, Vote] | None):
    """Samples grouped by id, and their votes (computed here unless the caller has them)."""
    groups = group_by_id(samples)
    return groups, votes if votes is not None else {qid: voting.vote(task, g) for qid, g in groups.items()}


def _distinct(task: Task, samples: list[dict], answers: list, seen: set) -> list[tuple[str, str, int]]:
    """(completion, answer, position) of each usable sample: not truncated, and its completion text
    not in `seen` (which grows, so a text is used once)."""
    out = []
    for i, (g, answer) in enumerate(zip(samples, answers)):
        completion = task.completion(g.get("response") or "")
        if is_truncated(g) or completion in seen:
            continue
        seen.add(completion)
        out.append((completion, answer, i))
    return out


@PAIRS.register("paper")
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
    sample_groups, votes = _grouped(task, samples, votes)
    out = []
    for q in questions:
        qid = str(q["id"])
        if qid not in weak or qid not in votes:
            continue
        out.extend(_pairs_for_question(task, q, weak[qid], sample_groups[qid], votes[qid],
                                       min_confidence, flip_confidence, max_pairs, seed))
    return out


@PAIRS.register("weak_rejected_only")
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


@PAIRS.register("self")
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
    sample_groups, votes = _grouped(task, samples, votes)
    out = []
    for q in questions:
        qid = str(q["id"])
        vote = votes.get(qid)
        if vote is None or vote.answer is None or vote.confidence < min_confidence:
            continue
        majority, others = [], []
        for completion, answer, i in _distinct(task, sample_groups[qid], vote.answers, {weak.get(qid)}):
            (majority if vote.group_of[i] == 0 else others).append((completion, answer))
        out.extend(sampled_pairs(task, q, [(c, r) for c in majority for r in others], vote, max_pairs,
                                 seeded_rng(seed, "self_pairs", qid)))
    return out


def sampled_pairs(task: Task, question: dict, candidates: list, vote: Vote, max_pairs: int, rng,
                  **extra) -> list[dict]:
    """Up to `max_pairs` of the (chosen, rejected) `candidates`, each (completion, answer), drawn
    with `rng`, as preference records without a weak side."""
    picked = rng.sample(candidates, min(max_pairs, len(candidates)))
    return [{"id": str(question["id"]), "prompt": task.prompt(question["question"]), "chosen": c[0],
             "rejected": r[0], "weak_side": "none", "confidence": vote.confidence, "majority_answer": vote.answer,
             "chosen_answer": c[1], "rejected_answer": r[1], **extra} for c, r in picked]


def _pairs_for_question(task: Task, question: dict, weak: dict, samples: list[dict], vote: Vote,
                        min_confidence: float, flip_confidence: float, max_pairs: int,
                        seed: int) -> list[dict]:
    if vote.answer is None or vote.confidence < min_confidence or is_truncated(weak):
        return []
    weak_answer = task.extract_answer(weak.get("response") or "")
    weak_completion = task.completion(weak.get("response") or "")
    # distinct usable samples (by completion text), with their answers
    usable = [(c, a) for c, a, _ in _distinct(task, samples, vote.answers, {weak_completion})]
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


@PAIRS.register("agreement", params=("min_support", "prefer"), needs=("icl_gens",))
def agreement_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], samples: Iterable[dict],
                    min_confidence: float = 0.6, flip_confidence: float = 0.8, max_pairs: int = 1, seed: int = 42,
                    votes: dict[str, Vote] | None = None, icl_gens: Iterable[dict] = (), min_support: int = 3,
                    prefer: str = "icl") -> list[dict]:
    """Pairs labelled by the method's agreement signal instead of M_plus's majority (ours; the
    Stage III `agreement` rule used offline): the label is an answer that the weak model or the
    in-context strong model gave AND at least `min_support` of M_plus's k samples reach
    (`pseudo_labels.agreement_labels`). Chosen = a sample with the label; rejected = a sample
    with another answer or the weak response when its answer differs. Unlike the paper's rule it
    reaches the questions where M_plus is unsure (the right answer is among its samples far more
    often than it is the majority), which is where a preference can move its greedy answer.

    weak_side is "rejected" when the rejected side is the weak response, else "none";
    `confidence` is the label's share of the k samples. `min_confidence` and `flip_confidence`
    are unused. Truncated responses are never used.
    """
    _check(min_confidence, flip_confidence, max_pairs)
    samples = list(samples)
    weak = first_generation(weak_gens)
    labels = agreement_labels(task, questions, samples, weak.values(), icl_gens, min_support=min_support,
                              prefer=prefer)
    sample_groups, votes = _grouped(task, samples, votes)
    out = []
    for q in questions:
        qid = str(q["id"])
        label = labels.get(qid)
        if label is None:
            continue
        vote = votes[qid]
        seen, chosen, rejected = set(), [], []
        w = weak.get(qid)
        if w is not None and not is_truncated(w):
            w_answer = task.extract_answer(w.get("response") or "")
            w_completion = task.completion(w.get("response") or "")
            seen.add(w_completion)
            if not (w_answer and task.equivalent(w_answer, label)):
                rejected.append((w_completion, w_answer, "rejected"))
        for completion, answer, _ in _distinct(task, sample_groups[qid], vote.answers, seen):
            right = bool(answer) and task.equivalent(answer, label)
            (chosen if right else rejected).append((completion, answer, "none"))
        candidates = [(c, r) for c in chosen for r in rejected]
        picked = seeded_rng(seed, "agreement_pairs", qid).sample(candidates, min(max_pairs, len(candidates)))
        prompt = task.prompt(q["question"])
        share = support(task, vote, label) / vote.n if vote.n else 0.0
        out.extend({"id": qid, "prompt": prompt, "chosen": c[0], "rejected": r[0], "weak_side": r[2],
                    "confidence": share, "majority_answer": vote.answer, "chosen_answer": c[1],
                    "rejected_answer": r[1]} for c, r in picked)
    return out


@PAIRS.register("scpo", params=("min_margin",))
def scpo_pairs(task: Task, questions: Sequence[dict], weak_gens: Iterable[dict], samples: Iterable[dict],
               min_confidence: float = 0.6, flip_confidence: float = 0.8, max_pairs: int = 1, seed: int = 42,
               votes: dict[str, Vote] | None = None, *, min_margin: float = 0.0) -> list[dict]:
    """Self-Consistency Preference Optimization (Prasad et al., 2024, ScPO): chosen = a sample
    with the most-voted answer, rejected = a sample with the LEAST-voted answer (answerless
    samples are not an answer), weighted by the vote margin, `weight` = (votes of chosen - votes
    of rejected) / k. Pairs whose weight is below `stage2.min_margin` are left out. No weak side.

    ScPO weights each pair's loss by its margin; TRL's DPO has no per-pair weight, so here the
    weight is recorded in each pair (and the report's pair table) and `min_margin` filters by it."""
    _check(min_confidence, flip_confidence, max_pairs)
    if not 0 <= min_margin <= 1:
        raise ValueError(f"min_margin must be in [0, 1], got {min_margin}")
    sample_groups, votes = _grouped(task, samples, votes)
    out = []
    for q in questions:
        qid = str(q["id"])
        vote = votes.get(qid)
        if vote is None or len(vote.groups) < 2:
            continue
        least = len(vote.groups) - 1
        weight = (vote.groups[0][1] - vote.groups[least][1]) / vote.n
        if weight <= 0 or weight < min_margin:
            continue
        usable = _distinct(task, sample_groups[qid], vote.answers, set())
        most = [(c, a) for c, a, i in usable if vote.group_of[i] == 0]
        fewest = [(c, a) for c, a, i in usable if vote.group_of[i] == least]
        out.extend(sampled_pairs(task, q, [(c, r) for c in most for r in fewest], vote, max_pairs,
                                 seeded_rng(seed, "scpo_pairs", qid), weight=round(weight, 4)))
    return out
