"""Scores: grading rows, accuracy, unbiased pass@k, maj@k, PGR, and diagnostics of the
selected data against hidden gold (how good is what the method picked?)."""

from __future__ import annotations

from math import comb
from typing import Iterable, Mapping, Sequence

from w2s.io import DataError
from w2s.method.selection import Selection
from w2s.method.voting import majority_vote
from w2s.records import group_by_id
from w2s.tasks.base import Task


def grade_records(task: Task, rows: Sequence[dict], response_field: str = "response",
                  gold_field: str | None = None, path: str | None = None) -> list[dict]:
    """Copies of `rows` with `pred` (str, "" if none) and `correct` (bool) added.

    Gold is `row[gold_field]` (taken as the final answer, or extracted from it when it is a
    solution), else the task's own gold extraction. A row without gold is a DataError
    naming the row and field.
    """
    out = []
    for i, row in enumerate(rows, 1):
        if response_field not in row or not isinstance(row[response_field], str):
            raise DataError(path, "expected a string model response", row=i, field=response_field)
        try:
            if gold_field is not None:
                if row.get(gold_field) is None:
                    raise KeyError(gold_field)
                gold = task.gold_answer({"answer": str(row[gold_field])})
            else:
                gold = task.gold_answer(row)
        except (KeyError, ValueError):
            raise DataError(path, "missing gold answer", row=i, field=gold_field or "answer") from None
        before = _bounded_count(task)
        pred = task.extract_answer(row[response_field])
        graded = {**row, "pred": pred, "correct": task.matches(pred, gold)}
        if _bounded_count(task) > before:  # slow, timed out, or past the grading budget: say which row
            graded["grading_bounded"] = True
        out.append(graded)
    return out


def _bounded_count(task: Task) -> int:
    report = task.grading_report()
    return report.get("slow", 0) + report.get("skipped", 0)


def accuracy(correct: Iterable[bool]) -> float:
    flags = [bool(c) for c in correct]
    return sum(flags) / len(flags) if flags else 0.0


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al., 2021)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per question, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k(correct_per_question: Mapping[str, Sequence[bool]] | Sequence[Sequence[bool]], k: int) -> float:
    """Mean unbiased pass@k over questions; each entry is the correctness of its n samples."""
    groups = list(correct_per_question.values()) if isinstance(correct_per_question, Mapping) \
        else list(correct_per_question)
    if not groups:
        return 0.0
    return sum(pass_at_k_estimate(len(g), sum(map(bool, g)), k) for g in groups) / len(groups)


def maj_at_k(task: Task, samples: Iterable[dict], golds: Mapping[str, str], k: int | None = None) -> float:
    """Share of questions (of `golds`) whose majority answer over the first k samples is
    correct. A question with no samples or no valid answer counts as wrong."""
    return accuracy(maj_verdicts(task, samples, golds, k).values())


def maj_verdicts(task: Task, samples: Iterable[dict], golds: Mapping[str, str], k: int | None = None) -> dict[str, int]:
    """{id: 1 when the majority answer of its first k samples is correct, else 0} for every id of
    `golds` (per question, for paired comparisons of the vote against greedy decoding)."""
    groups = group_by_id(samples)
    if k is not None:
        groups = {qid: gens[:k] for qid, gens in groups.items()}
    votes = majority_vote(task, [g for gens in groups.values() for g in gens])
    return {qid: int(qid in votes and task.matches(votes[qid].answer or "", gold)) for qid, gold in golds.items()}


def pgr(x: float, weak: float, ceiling: float) -> float | None:
    """Performance gap recovered, (x - weak) / (ceiling - weak); None when the gap is 0."""
    gap = ceiling - weak
    if abs(gap) < 1e-12:
        return None
    return (x - weak) / gap


def golds_of(questions: Iterable[dict]) -> dict[str, str]:
    """{id: gold answer} for the questions that carry one."""
    return {str(q["id"]): str(q["answer"]) for q in questions if q.get("answer") not in (None, "")}


def selection_diagnostics(task: Task, selection: Selection, questions: Sequence[dict],
                          gold: Sequence[dict] | None = None) -> dict:
    """Coverage (selected / questions) and, where gold is known (on the questions, or in the
    hidden `gold` records), precision of the selected answers (the agreed answer equals gold)."""
    golds = golds_of(questions if gold is None else gold)
    n = len(questions)
    out = {"n_questions": n, "n_selected": len(selection.ids),
           "coverage": len(selection.ids) / n if n else 0.0}
    graded = [qid for qid in selection.ids if qid in golds]
    if graded:
        right = sum(task.matches(selection.answers[qid], golds[qid]) for qid in graded)
        out.update(n_graded=len(graded), n_correct=right, precision=right / len(graded))
    return out


def pair_diagnostics(task: Task, pairs: Sequence[dict], questions: Sequence[dict]) -> dict:
    """Against hidden gold: how often the chosen side is correct, the rejected side wrong,
    and both at once (pair accuracy), overall and by which side the weak response is on."""
    golds = golds_of(questions)

    def answer(p: dict, side: str) -> str:
        key = f"{side}_answer"
        return p[key] if key in p else task.extract_answer(p[side])

    out: dict = {"n_pairs": len(pairs)}
    graded = [p for p in pairs if str(p["id"]) in golds]
    if not graded:
        return out
    for label, subset in (("", graded),
                          ("weak_chosen_", [p for p in graded if p.get("weak_side") == "chosen"]),
                          ("weak_rejected_", [p for p in graded if p.get("weak_side") == "rejected"])):
        if not subset:
            continue
        chosen_ok = [task.matches(answer(p, "chosen"), golds[str(p["id"])]) for p in subset]
        rejected_ok = [task.matches(answer(p, "rejected"), golds[str(p["id"])]) for p in subset]
        out[f"{label}n"] = len(subset)
        out[f"{label}chosen_accuracy"] = accuracy(chosen_ok)
        out[f"{label}rejected_accuracy"] = accuracy(rejected_ok)
        out[f"{label}pair_accuracy"] = accuracy(c and not r for c, r in zip(chosen_ok, rejected_ok))
    return out


def correctness_by_id(task: Task, gens: Iterable[dict], golds: Mapping[str, str]) -> dict[str, list[bool]]:
    """{id: [is sample i correct]} for every question of `golds` (a question without
    generations gets an empty list, and so counts as wrong)."""
    out: dict[str, list[bool]] = {qid: [] for qid in golds}
    for qid, rs in group_by_id(gens).items():
        if qid in golds:
            out[qid] = [task.is_correct(r.get("response") or "", golds[qid]) for r in rs]
    return out


def greedy_accuracy(task: Task, gens: Iterable[dict], golds: Mapping[str, str]) -> float:
    """Accuracy of each question's first generation (a question without one counts as wrong)."""
    return accuracy(bool(v) and v[0] for v in correctness_by_id(task, gens, golds).values())


def score_generations(task: Task, questions: Sequence[dict], greedy: Iterable[dict],
                      samples: Iterable[dict] = ()) -> dict:
    """A model's test scores: greedy accuracy with its bootstrap 95% CI and the per-question
    verdicts behind it (`correct`: {id: 0/1}, for paired comparisons), and with n samples per
    question, unbiased pass@k, maj@k (per question: `correct_maj`) and avg@k (the samples' mean
    accuracy) at k = n. Questions without a greedy answer count as wrong.

    Scores are STRICT: a task with a lenient fallback parser (`task.strict()` is not None) is
    scored on its own answer format, and its lenient greedy accuracy is `accuracy_lenient`
    (per question: `correct_lenient`)."""
    strict = task.strict()
    if strict is not None:
        greedy, samples = list(greedy), list(samples)
        lenient_ok = correctness_by_id(task, greedy, golds_of(questions))
        correct_lenient = {qid: int(bool(v) and v[0]) for qid, v in lenient_ok.items()}
        return {**score_generations(strict, questions, greedy, samples),
                "accuracy_lenient": accuracy(correct_lenient.values()), "correct_lenient": correct_lenient}
    golds = golds_of(questions)
    greedy_ok = correctness_by_id(task, greedy, golds)
    correct = {qid: int(bool(v) and v[0]) for qid, v in greedy_ok.items()}
    out: dict = {"n": len(golds), "accuracy": accuracy(correct.values()),
                 "ci95": bootstrap_ci(list(correct.values())), "correct": correct}
    samples = list(samples)
    if samples:
        per_q = correctness_by_id(task, samples, golds)
        k = min((len(v) for v in per_q.values()), default=0)
        if k > 0:
            correct_maj = maj_verdicts(task, samples, golds, k)
            out.update({"k": k, "pass@k": pass_at_k({q: v[:k] for q, v in per_q.items()}, k),
                        "maj@k": accuracy(correct_maj.values()), "avg@k": avg_at_k(per_q, golds, k),
                        "correct_maj": correct_maj})
    return out


def avg_at_k(per_question: Mapping[str, Sequence[bool]], golds: Mapping[str, str], k: int) -> float:
    """The mean accuracy of the first k samples per question (a question without samples counts
    0): what a vote or a reward built from samples starts from (self-consistency pays when
    maj@k > greedy; an RL signal from votes needs avg@k well below maj@k)."""
    if not golds:
        return 0.0
    return sum(sum(map(bool, per_question.get(q, [])[:k])) / k for q in golds) / len(golds)


def _bootstrap_means(values: Sequence[int], n_resamples: int, seed: int) -> list[float]:
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(arr), size=(n_resamples, len(arr)))
    return sorted(arr[idx].mean(axis=1).tolist())


def _interval(sorted_means: list[float]) -> list[float]:
    n = len(sorted_means)
    return [round(sorted_means[int(0.025 * n)], 6), round(sorted_means[int(0.975 * n) - 1], 6)]


def bootstrap_ci(flags: Sequence[int], n_resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95% interval of a mean of 0/1 verdicts (None for no data)."""
    if not flags:
        return None
    return _interval(_bootstrap_means(flags, n_resamples, seed))


def paired_comparison(a: Mapping[str, int], b: Mapping[str, int], n_resamples: int = 2000,
                      seed: int = 0) -> dict | None:
    """Model a minus model b on the questions both were scored on: the accuracy difference,
    its paired-bootstrap 95% CI, and the exact two-sided McNemar p-value (discordant pairs only)."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diffs = [a[i] - b[i] for i in ids]
    a_only, b_only = diffs.count(1), diffs.count(-1)
    return {"n": len(ids), "delta": sum(diffs) / len(ids), "ci95": _interval(_bootstrap_means(diffs, n_resamples, seed)),
            "p": mcnemar_p(a_only, b_only), "a_only": a_only, "b_only": b_only}


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar test: under "no difference" each discordant question is a fair coin."""
    m = a_only + b_only
    if m == 0:
        return 1.0
    tail = sum(comb(m, i) for i in range(min(a_only, b_only) + 1)) / 2 ** m
    return min(1.0, 2 * tail)
