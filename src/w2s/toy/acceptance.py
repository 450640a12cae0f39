"""Is a toy world fit for the method? The acceptance criteria of docs/toy_world.md ("Acceptance
criteria for the next world"), measured from a run's files on the dev split:

1. strong few-shot strict accuracy within 3 points of its lenient accuracy;
2. M_plus maj@10 - greedy >= +3 at some temperature of the sweep;
3. of M_plus's wrong samples, >= 40 % with a plan-level error, and object nouns right in >= 95 %;
4. Stage I works: weak fine-tuned 25-45 %, M_plus - full weak >= +15, strong few-shot strict
   below M_plus's 95 % CI.

The per-sample checks are pure functions over a response and its question record:
`error_kind` says why a wrong answer is wrong, `nouns_right` whether every object noun written
is one the question names.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from w2s.io import read_json, read_jsonl
from w2s.method.metrics import accuracy, avg_at_k, correctness_by_id, golds_of, maj_verdicts, paired_comparison
from w2s.pipeline.layout import Q_DEV, eval_rel
from w2s.records import group_by_id
from w2s.toy.solutions import PLANS, solution_plan
from w2s.toy.world import OBJECTS, n_distractors

_EQ = re.compile(r"(\d+) ?([-+*/]) ?(\d+) ?= ?(\d+)")
_NOUNS = re.compile(r"\b(" + "|".join(OBJECTS) + r")\b")
ERROR_KINDS = ("no_answer", "false_equation", "plan", "final_copy", "no_equation")


def _holds(a: int, op: str, b: int, r: int) -> bool:
    """Is `a op b = r` true (integer operands as written)?"""
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op] == r


def error_kind(response: str, answer: str, gold: str) -> str:
    """Why a wrong response is wrong (`answer`: its strict answer, "" when none):
    no_answer (no `#### N`), false_equation (an arithmetic slip: some equation is false),
    plan (every equation true but the chain computes something else: a wrong operand, a distractor
    used, a step skipped or reordered), final_copy (the chain ends at the gold value, the final
    line says otherwise), no_equation (an answer without any equation)."""
    if not answer:
        return "no_answer"
    equations = [(int(a), s, int(b), int(r)) for a, s, b, r in _EQ.findall(response.split("####")[0])]
    if not equations:
        return "no_equation"
    if not all(_holds(*eq) for eq in equations):
        return "false_equation"
    return "final_copy" if str(equations[-1][3]) == str(gold) else "plan"


def slip_rates(responses) -> dict:
    """Per operation (`+ - * /`): how many equations the responses write and the share that are
    false, the arithmetic a model gets wrong whatever its plan (docs/toy_world.md, world v17)."""
    counts = {op: [0, 0] for op in "+-*/"}
    for response in responses:
        for a, s, b, r in _EQ.findall(response.split("####")[0]):
            a, b, r = int(a), int(b), int(r)
            counts[s][0] += 1
            counts[s][1] += not _holds(a, s, b, r)
    return {op: {"equations": n, "false": bad, "rate": bad / n if n else 0.0} for op, (n, bad) in counts.items()}


def nouns_right(response: str, question: str) -> bool:
    """Every object noun the response writes is one the question names (a distractor's counts)."""
    return set(_NOUNS.findall(response)) <= set(_NOUNS.findall(question))


def sample_diagnostics(task, questions: list[dict], samples: list[dict], strict: bool = True) -> dict:
    """Over a model's samples: the share of each error kind among the wrong ones, and the share of
    samples whose object nouns are right. Answers are read strictly (the task's `strict()` form)
    unless `strict` is False."""
    by_id = {str(q["id"]): q for q in questions}
    kinds = dict.fromkeys(ERROR_KINDS, 0)
    wrong = right_nouns = n = 0
    grader = (task.strict() or task) if strict else task
    for s in samples:
        q = by_id.get(str(s["id"]))
        if q is None:
            continue
        response = grader.clean_response(s.get("response") or "")
        n += 1
        right_nouns += nouns_right(response, q["question"])
        answer = grader.find_answer(response)
        if not grader.equivalent(answer, q["answer"]):
            wrong += 1
            kinds[error_kind(response, answer, str(q["answer"]))] += 1
    return {"samples": n, "wrong": wrong, "error_kinds": kinds,
            "plan_share": kinds["plan"] / wrong if wrong else 0.0,
            "nouns_right": right_nouns / n if n else 0.0}


def accuracy_by_distractor(task, questions: list[dict], greedy: list[dict]) -> dict:
    """Greedy strict accuracy on the questions with a distractor (`world.n_distractors`: told by the
    question, since a v20 gold solution may leave it out) and on those without: where world v19
    puts the room between the few-shot base and fine-tuning (docs/toy_world.md)."""
    grader = task.strict() or task
    by_id = {str(q["id"]): q for q in questions}
    groups: dict[str, list[bool]] = {"with": [], "without": []}
    for g in greedy:
        if (q := by_id.get(str(g["id"]))) is not None:
            group = "with" if n_distractors(q) > 0 else "without"
            groups[group].append(grader.is_correct(g.get("response") or "", str(q["answer"])))
    return {name: {"n": len(oks), "accuracy": accuracy(oks)} for name, oks in groups.items()}


def plan_mix(task, questions: list[dict], generations: list[dict]) -> dict:
    """Per solution plan (`solutions.PLANS`, told by `solutions.solution_plan`): the share of the responses
    that follow it and their strict accuracy; worlds with plans (`solutions.PLAN_VERSIONS`) ask
    whether a model takes more than one."""
    grader = task.strict() or task
    by_id = {str(q["id"]): q for q in questions}
    counts = {plan: [0, 0] for plan in PLANS}
    for g in generations:
        if (q := by_id.get(str(g["id"]))) is not None:
            response = g.get("response") or ""
            tally = counts[solution_plan(response)]
            tally[0] += 1
            tally[1] += grader.is_correct(response, str(q["answer"]))
    n = sum(c for c, _ in counts.values())
    return {plan: {"share": c / n if n else 0.0, "accuracy": ok / c if c else 0.0} for plan, (c, ok) in counts.items()}


def _first_correct(task, greedy: list[dict], golds: dict) -> dict[str, int]:
    """{id: 1 when the question's greedy answer is right, else 0} (no answer: 0)."""
    return {q: int(bool(v) and v[0]) for q, v in correctness_by_id(task, greedy, golds).items()}


def lenient_vote(lenient_task, questions: list[dict], greedy: list[dict], samples: list[dict]) -> dict:
    """Greedy, maj@k and avg@k read by the LENIENT parser (`lenient_task`: any final marker), with
    maj@k - greedy's paired CI: whether the vote would beat greedy decoding once the answer format
    is fixed (a diagnostic beside criterion 2, which is strict)."""
    golds = golds_of(questions)
    greedy_ok = _first_correct(lenient_task, greedy, golds)
    per_q = correctness_by_id(lenient_task, samples, golds)
    k = min((len(v) for v in per_q.values()), default=0)
    maj = maj_verdicts(lenient_task, samples, golds, k)
    return {"k": k, "greedy": accuracy(greedy_ok.values()), "maj@k": accuracy(maj.values()),
            "avg@k": avg_at_k(per_q, golds, k), "maj_minus_greedy": paired_comparison(maj, greedy_ok)}


def vote_room(task, questions: list[dict], greedy: list[dict], samples: list[dict]) -> dict:
    """Where a vote over samples can move greedy decoding. maj@k - greedy = (won - lost) / n, where
    `won` counts questions greedy gets wrong and the vote right, `lost` the reverse. On the questions
    greedy gets wrong: the mean share of samples that are right, and of the commonest wrong answer.
    A right share far below the wrong one says the error belongs to the question (every sample
    repeats it), and no vote, nor a reward or pair built on one, can correct it."""
    golds = golds_of(questions)
    greedy_ok = _first_correct(task, greedy, golds)
    vote_ok = maj_verdicts(task, samples, golds)
    by_id = group_by_id(samples)
    right, top_wrong = [], []
    for qid in (q for q, ok in greedy_ok.items() if not ok):
        answers = [task.extract_answer(r.get("response") or "") for r in by_id.get(qid, [])]
        wrong = Counter(a for a in answers if not task.matches(a, golds[qid]))
        right.append((len(answers) - sum(wrong.values())) / len(answers) if answers else 0.0)
        top_wrong.append(max(wrong.values(), default=0) / len(answers) if answers else 0.0)
    return {"n": len(golds), "greedy_wrong": len(right),
            "won": sum(vote_ok[q] and not ok for q, ok in greedy_ok.items()),
            "lost": sum(ok and not vote_ok[q] for q, ok in greedy_ok.items()),
            "right_share_where_greedy_wrong": sum(right) / len(right) if right else 0.0,
            "top_wrong_share_where_greedy_wrong": sum(top_wrong) / len(top_wrong) if top_wrong else 0.0}


def vote_by_plan(task, questions: list[dict], greedy: list[dict], samples: list[dict]) -> dict:
    """Where greedy is wrong, do the samples that take another plan than the greedy answer's find the
    right answer more often? (v27's gold SFT: 57 % of its samples there in other plans, right 40 %
    against 21 % in greedy's plan, and the vote won by them; M_plus: 0-4 % in other plans.) The vote
    can gain from plans only where a model's samples leave its greedy answer's plan."""
    golds = golds_of(questions)
    greedy_of, by_id = group_by_id(greedy), group_by_id(samples)
    tally = {"greedy_plan": [0, 0], "other_plans": [0, 0]}   # [samples, right]
    several = 0
    for qid in (q for q, ok in _first_correct(task, greedy, golds).items() if not ok and q in greedy_of):
        plan, right_plans = solution_plan(greedy_of[qid][0].get("response") or ""), set()
        for s in by_id.get(qid, []):
            text = s.get("response") or ""
            ok = task.is_correct(text, golds[qid])
            cell = tally["greedy_plan" if solution_plan(text) == plan else "other_plans"]
            cell[0], cell[1] = cell[0] + 1, cell[1] + ok
            if ok:
                right_plans.add(solution_plan(text))
        several += len(right_plans) > 1
    n = sum(c for c, _ in tally.values())
    return {"samples": n, "in_greedy_plan": tally["greedy_plan"][0] / n if n else 0.0,
            **{f"right_in_{part}": ok / c if c else None for part, (c, ok) in tally.items()},
            "right_in_several_plans": several}


def base_screen(run_dir: str | Path, task, out_dir: str | Path, temperature: float = 0.7, n: int = 10) -> dict:
    """The strong base's doubt before any Stage I, which every Stage I model trains from: its few-shot
    dev prompts (those of the run's `strong_fewshot` dev eval) sampled `n` times at `temperature`
    by the evaluator (generations cached in `out_dir`; the run is only read). Where its greedy answer
    is wrong, how often are its samples right (`vote_room`), and which plans do they follow."""
    from w2s.evaluation import evaluate

    run_dir, rel = Path(run_dir), eval_rel("strong_fewshot", "dev")
    meta, questions = read_json(run_dir / rel), read_jsonl(run_dir / Q_DEV)
    greedy = _generations(run_dir, rel, "greedy")
    out = Path(out_dir) / f"strong_fewshot.t{temperature:g}.json"
    evaluate(task, meta["model"], questions, prompts=[{"id": g["id"], "prompt": g["prompt"]} for g in greedy],
             n=n, temperature=temperature, max_new_tokens=meta["max_new_tokens"], backend=meta["backend"],
             seed=meta["seed"], out_path=out, greedy_from=run_dir / rel)
    samples = _generations(out.parent, out.name, "samples")
    strict = task.strict() or task
    return {"temperature": temperature, "k": n, **vote_room(strict, questions, greedy, samples),
            "plans": plan_mix(task, questions, samples), "by_plan": vote_by_plan(strict, questions, greedy, samples)}


def _generations(run_dir: Path, rel: str, kind: str) -> list[dict]:
    """The greedy or sampled generations behind a scored file (its metrics name them)."""
    scored = run_dir / rel
    return read_jsonl(scored.parent / read_json(scored)["generations"][kind])


def world_acceptance(run_dir: str | Path, task, temperatures=(0.3, 0.5, 0.7, 1.0),
                     diagnose_at: float = 1.0) -> dict:
    """The four criteria from a dev-scored demo run (`w2s demo --dev-only`): each with its measured
    values and `met`. Reads eval_dev/*.json, the sweep's files and dev.jsonl; writes nothing."""
    run_dir = Path(run_dir)
    dev = {name: read_json(p) for name in ("weak", "strong_fewshot", "full_weak")
           if (p := run_dir / eval_rel(name, "dev")).exists()}
    metrics = read_json(run_dir / "metrics.json")
    m_plus_name = metrics["temperature_sweep"]["eval_name"]
    m_plus = read_json(run_dir / eval_rel(m_plus_name, "dev"))
    sweep = {row["temperature"]: row for row in metrics["temperature_sweep"]["rows"]}
    questions = read_jsonl(run_dir / Q_DEV)
    samples = _generations(run_dir, eval_rel(m_plus_name, "dev", diagnose_at), "samples")
    diag = sample_diagnostics(task, questions, samples)
    greedy = _generations(run_dir, eval_rel(m_plus_name, "dev"), "greedy")
    swept = {t: _generations(run_dir, eval_rel(m_plus_name, "dev", t), "samples") for t in temperatures if t in sweep}
    lenient = {t: lenient_vote(task, questions, greedy, gens) for t, gens in swept.items()}
    strict = task.strict() or task
    room = {t: vote_room(strict, questions, greedy, gens) for t, gens in swept.items()}
    by_plan = {t: vote_by_plan(strict, questions, greedy, gens) for t, gens in swept.items()}
    few = dev["strong_fewshot"]
    best = max(sweep.values(), key=lambda r: r["maj_minus_greedy"])
    criteria = {
        "1_fewshot_strict_vs_lenient": {
            "strict": few["accuracy"], "lenient": few["accuracy_lenient"],
            "gap": few["accuracy_lenient"] - few["accuracy"],
            "met": few["accuracy_lenient"] - few["accuracy"] <= 0.03},
        "2_self_consistency": {
            "rows": {t: {k: sweep[t][k] for k in ("greedy", "maj@k", "avg@k", "maj_minus_greedy",
                                                   "maj_minus_greedy_ci95")} for t in temperatures if t in sweep},
            "best_temperature": best["temperature"], "best": best["maj_minus_greedy"],
            "met": best["maj_minus_greedy"] >= 0.03},
        "3_errors_and_nouns": {**diag, "temperature": diagnose_at,
                               "met": diag["plan_share"] >= 0.40 and diag["nouns_right"] >= 0.95},
        "4_stage1": {
            "weak_ft": dev["weak"]["accuracy"], "full_weak": dev["full_weak"]["accuracy"],
            "m_plus": m_plus["accuracy"], "m_plus_ci95": m_plus["ci95"],
            "strong_fewshot_strict": few["accuracy"],
            "met": (0.25 <= dev["weak"]["accuracy"] <= 0.45
                    and m_plus["accuracy"] - dev["full_weak"]["accuracy"] >= 0.15
                    and few["accuracy"] < m_plus["ci95"][0])},
    }
    scored = {name: run_dir / eval_rel(name, "dev") for name in ("weak", "strong_fewshot", "gold_sft", m_plus_name)}
    greedy_of = {name: _generations(run_dir, eval_rel(name, "dev"), "greedy")
                 for name, path in scored.items() if path.exists() and "generations" in read_json(path)}
    greedy_diag = greedy_diagnostics(task, questions, greedy_of)
    greedy_diag["plan_mix"][f"{m_plus_name} samples, T {diagnose_at:g}"] = plan_mix(task, questions, samples)
    return {"m_plus": m_plus_name, "n_dev": len(questions), "criteria": criteria,
            "diagnostics": {"lenient_vote": lenient, "vote_room": room, "vote_by_plan": by_plan, **greedy_diag,
                            "lenient_errors": sample_diagnostics(task, questions, samples, strict=False)},
            "accepted": all(c["met"] for c in criteria.values())}


def greedy_diagnostics(task, questions: list[dict], greedy_of: dict[str, list[dict]]) -> dict:
    """Per model's greedy dev answers: slip rates, accuracy with / without a distractor, the plans it
    follows, and those plans on the questions with a distractor and without (whether the question
    names the plan: v25's base told a story on 230 of 244 distractor questions)."""
    split = {"with": [q for q in questions if n_distractors(q) > 0],
             "without": [q for q in questions if n_distractors(q) == 0]}
    return {"greedy_slip_rates": {name: slip_rates(g["response"] for g in gens) for name, gens in greedy_of.items()},
            "greedy_by_distractor": {name: accuracy_by_distractor(task, questions, gens)
                                     for name, gens in greedy_of.items()},
            "plan_mix": {name: plan_mix(task, questions, gens) for name, gens in greedy_of.items()},
            "plan_mix_by_distractor": {name: {part: plan_mix(task, qs, gens) for part, qs in split.items()}
                                       for name, gens in greedy_of.items()}}
