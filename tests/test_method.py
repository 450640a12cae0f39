"""The method's data logic: selection, few-shot prompts, voting, pairs, metrics."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2s.method import fewshot, metrics, pairs, selection, voting
from w2s.tasks import get_task

GSM = get_task("gsm8k")


def q(i, text=None, answer=None):
    rec = {"id": str(i), "question": text or f"What is {i}?"}
    if answer is not None:
        rec["answer"] = answer
    return rec


def gen(i, answer, sample_index=0, finish="stop", body="work"):
    return {"id": str(i), "prompt": GSM.prompt(f"What is {i}?"), "response": f"{body}\n#### {answer}",
            "sample_index": sample_index, "finish_reason": finish}


# ---------------------------------------------------------------- selection

def test_full_weak_sft_uses_zero_shot_prompt_and_completion():
    sft = selection.full_weak_sft(GSM, [q(1), q(2)], [gen(2, "5"), gen(1, "4")])
    assert [r["id"] for r in sft] == ["1", "2"]
    assert sft[0] == {"id": "1", "prompt": "Question: What is 1?\nAnswer:", "completion": " work\n#### 4"}


def test_select_consistent_is_equivalence_aware_and_skips_empty_truncated_missing():
    questions = [q(i, answer={1: "4.2", 6: "2"}.get(i, str(i))) for i in range(1, 7)]
    weak = [gen(1, "4.20"), gen(2, "5"), gen(3, ""), gen(4, "7", finish="length"), gen(5, "9"), gen(6, "1")]
    icl = [gen(1, "4.2", body="icl"), gen(2, "6"), gen(3, "3"), gen(4, "7"), gen(6, "$1", body="icl")]
    sel = selection.select_consistent(GSM, questions, weak, icl)
    assert sel.ids == ["1", "6"]
    assert sel.answers == {"1": "4.20", "6": "1"}
    assert sel.skipped == {"missing": 1, "empty": 2, "disagree": 1}
    assert [r["completion"] for r in sel.weak] == [" work\n#### 4.20", " work\n#### 1"]
    assert [r["completion"] for r in sel.icl] == [" icl\n#### 4.2", " icl\n#### $1"]
    assert [(r["id"], r["source"]) for r in sel.hybrid] == [("1", "weak"), ("1", "icl"), ("6", "weak"), ("6", "icl")]
    assert all(r["prompt"] == GSM.prompt(f"What is {r['id']}?") for r in sel.hybrid)
    diag = metrics.selection_diagnostics(GSM, sel, questions)
    assert diag["coverage"] == pytest.approx(2 / 6) and diag["precision"] == 0.5  # id 6 is wrong


def test_selection_joins_by_id_not_position():
    a = selection.select_consistent(GSM, [q(1), q(2)], [gen(1, "1"), gen(2, "2")], [gen(2, "2"), gen(1, "1")])
    assert a.ids == ["1", "2"]


def test_question_from_prompt_zero_and_few_shot():
    assert selection.question_from_prompt(GSM, GSM.prompt("How many?")) == "How many?"
    fs = GSM.fewshot_prompt([("A?", "1"), ("B?", "2")], "C?\nmultiline")
    assert selection.question_from_prompt(GSM, fs) == "C?\nmultiline"
    assert selection.question_from_prompt(GSM, "free text") is None
    qs = selection.questions_from_generations(GSM, [{"id": 1, "prompt": GSM.prompt("X"), "gold": "3"}])
    assert qs == [{"id": "1", "question": "X", "answer": "3"}]


# ---------------------------------------------------------------- few-shot

def test_fewshot_prompts_k_seeded_never_target():
    questions = [q(i) for i in range(30)]
    demos = [gen(i, i) for i in range(30)] + [gen(99, "")]
    a = fewshot.build_fewshot_prompts(GSM, questions, demos, k=4, seed=1)
    b = fewshot.build_fewshot_prompts(GSM, list(reversed(questions)), demos, k=4, seed=1)
    c = fewshot.build_fewshot_prompts(GSM, questions, demos, k=4, seed=2)
    assert {r["id"]: r["prompt"] for r in a} == {r["id"]: r["prompt"] for r in b}  # order-independent
    assert [r["prompt"] for r in a] != [r["prompt"] for r in c]
    for r in a:
        assert len(r["demo_ids"]) == 4 and r["id"] not in r["demo_ids"]
        assert r["prompt"].count("Question:") == 5
        assert r["prompt"].endswith(GSM.prompt(f"What is {r['id']}?"))
        assert selection.question_from_prompt(GSM, r["prompt"]) == f"What is {r['id']}?"


def test_fewshot_excludes_duplicate_question_text_and_small_pools():
    questions = [q(1, "same"), q(2, "same"), q(3, "other")]
    demos = [gen(1, 1), gen(2, 2), gen(3, 3)]
    out = {r["id"]: r for r in fewshot.build_fewshot_prompts(GSM, questions, demos, k=2, seed=0)}
    assert out["1"]["demo_ids"] == ["3"] and out["3"]["demo_ids"] in (["1", "2"], ["2", "1"])
    with pytest.raises(ValueError):
        fewshot.build_fewshot_prompts(GSM, questions, demos, k=-1, seed=0)


# ---------------------------------------------------------------- voting

def test_majority_vote_groups_by_equivalence_and_ignores_truncated():
    samples = [gen(1, "4.0", 0), gen(1, "4", 1), gen(1, "$4", 2), gen(1, "5", 3, finish="length"),
               gen(1, "5", 4, finish="length"), gen(1, "5", 5, finish="length"), gen(1, "", 6),
               gen(1, "6", 7)]
    v = voting.majority_vote(GSM, samples)["1"]
    assert GSM.equivalent(v.answer, "4") and v.confidence == 3 / 8 and v.n == 8 and v.n_valid == 4
    assert [size for _, size in v.groups] == [3, 1]
    only_truncated = voting.majority_vote(GSM, [gen(2, "1", 0, finish="length"), gen(2, "", 1)])["2"]
    assert only_truncated.answer is None and only_truncated.confidence == 0.0


def test_math_vote_uses_symbolic_equivalence():
    math = get_task("math")
    samples = [{"id": "m", "response": rf"\boxed{{{a}}}", "sample_index": i}
               for i, a in enumerate([r"\frac{1}{2}", "0.5", r"\dfrac12", "3"])]
    v = voting.majority_vote(math, samples)["m"]
    assert v.confidence == 0.75 and math.equivalent(v.answer, "1/2")


# ---------------------------------------------------------------- pairs

def samples_for(i, answers, truncated=()):
    return [gen(i, a, k, finish="length" if k in truncated else "stop", body=f"sample {k}")
            for k, a in enumerate(answers)]


def test_pairs_weak_agrees_with_majority():
    out = pairs.build_pairs(GSM, [q(1)], [gen(1, "4", body="weak")], samples_for(1, ["4"] * 7 + ["5", "6", "6"]))
    assert len(out) == 1
    p = out[0]
    assert p["chosen"] == " weak\n#### 4" and p["weak_side"] == "chosen" and p["rejected_answer"] in ("5", "6")
    assert p["confidence"] == 0.7 and p["prompt"] == GSM.prompt("What is 1?") and p["majority_answer"] == "4"


def test_pairs_flip_needs_high_confidence():
    weak = [gen(1, "5", body="weak")]
    low = pairs.build_pairs(GSM, [q(1)], weak, samples_for(1, ["4"] * 7 + ["5"] * 3))
    assert low == []  # 0.7 < 0.8: neither rule applies
    high = pairs.build_pairs(GSM, [q(1)], weak, samples_for(1, ["4"] * 8 + ["5"] * 2), max_pairs=3)
    assert len(high) == 3 and {p["weak_side"] for p in high} == {"rejected"}
    assert all(p["rejected"] == " weak\n#### 5" and p["chosen_answer"] == "4" for p in high)
    assert len({p["chosen"] for p in high}) == 3


def test_pairs_floor_and_no_other_answer():
    weak = [gen(1, "4", body="weak")]
    assert pairs.build_pairs(GSM, [q(1)], weak, samples_for(1, ["4"] * 5 + ["5"] * 5)) == []  # 0.5 < 0.6
    assert pairs.build_pairs(GSM, [q(1)], weak, samples_for(1, ["4"] * 10)) == []  # no rejected candidate
    # only truncated samples disagree: they are never used as a side
    assert pairs.build_pairs(GSM, [q(1)], weak, samples_for(1, ["4"] * 8 + ["5", "5"], truncated={8, 9})) == []


def test_pairs_thresholds_configurable_and_seeded():
    weak = [gen(1, "4", body="weak")]
    s = samples_for(1, ["4"] * 5 + ["5", "6", "7", "8", "9"])
    assert pairs.build_pairs(GSM, [q(1)], weak, s) == []
    got = pairs.build_pairs(GSM, [q(1)], weak, s, min_confidence=0.5, max_pairs=2, seed=3)
    assert got == pairs.build_pairs(GSM, [q(1)], weak, s, min_confidence=0.5, max_pairs=2, seed=3)
    assert len(got) == 2
    seeds = {tuple(p["rejected"] for p in pairs.build_pairs(GSM, [q(1)], weak, s, min_confidence=0.5, seed=k))
             for k in range(10)}
    assert len(seeds) > 1
    with pytest.raises(ValueError):
        pairs.build_pairs(GSM, [q(1)], weak, s, max_pairs=0)


ANSWERS = ["1", "1.0", "2", "3", ""]


@st.composite
def pair_world(draw):
    n_q = draw(st.integers(1, 5))
    weak, samples = [], []
    for i in range(n_q):
        weak.append(gen(i, draw(st.sampled_from(ANSWERS)), body=f"weak{i}",
                        finish=draw(st.sampled_from(["stop", "stop", "length"]))))
        k = draw(st.integers(1, 10))
        for j in range(k):
            samples.append(gen(i, draw(st.sampled_from(ANSWERS)), j, body=f"s{draw(st.integers(0, 4))}",
                               finish=draw(st.sampled_from(["stop", "stop", "stop", "length"]))))
    lo = draw(st.floats(0, 1))
    hi = draw(st.floats(lo, 1))
    return [q(i) for i in range(n_q)], weak, samples, lo, hi, draw(st.integers(1, 4)), draw(st.integers(0, 3))


@settings(max_examples=150, deadline=None)
@given(pair_world())
def test_pair_properties(world):
    questions, weak, samples, lo, hi, max_pairs, seed = world
    out = pairs.build_pairs(GSM, questions, weak, samples, min_confidence=lo, flip_confidence=hi,
                            max_pairs=max_pairs, seed=seed)
    weak_by_id = {w["id"]: GSM.completion(w["response"]) for w in weak}
    votes = voting.majority_vote(GSM, samples)
    seen = set()
    for p in out:
        # the weak response is always one side, the side it claims
        assert p[p["weak_side"]] == weak_by_id[p["id"]]
        # never equivalent answers on both sides
        assert not GSM.equivalent(GSM.extract_answer(p["chosen"]), GSM.extract_answer(p["rejected"]))
        assert GSM.extract_answer(p["chosen"])  # the chosen side always has an answer
        # thresholds
        assert p["confidence"] >= lo and p["confidence"] == votes[p["id"]].confidence
        if p["weak_side"] == "rejected":
            assert p["confidence"] >= hi
        else:
            assert GSM.equivalent(GSM.extract_answer(p["chosen"]), votes[p["id"]].answer)
        key = (p["id"], p["chosen"], p["rejected"])
        assert key not in seen
        seen.add(key)
    for qid in {p["id"] for p in out}:
        assert sum(p["id"] == qid for p in out) <= max_pairs


# ---------------------------------------------------------------- metrics

def test_accuracy_and_pgr():
    assert metrics.accuracy([True, False, True, True]) == 0.75 and metrics.accuracy([]) == 0.0
    assert metrics.pgr(0.6, 0.4, 0.8) == pytest.approx(0.5)
    assert metrics.pgr(0.5, 0.5, 0.5) is None


def brute_pass_at_k(flags, k):
    subsets = list(combinations(range(len(flags)), k))
    return sum(any(flags[i] for i in s) for s in subsets) / len(subsets)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=9), st.integers(1, 9))
def test_pass_at_k_is_the_unbiased_estimator(flags, k):
    if k > len(flags):
        with pytest.raises(ValueError):
            metrics.pass_at_k([flags], k)
        return
    assert metrics.pass_at_k([flags], k) == pytest.approx(brute_pass_at_k(flags, k))


def test_pass_at_k_values():
    assert metrics.pass_at_k_estimate(10, 0, 1) == 0.0 and metrics.pass_at_k_estimate(10, 10, 5) == 1.0
    assert metrics.pass_at_k_estimate(10, 3, 1) == pytest.approx(0.3)
    assert metrics.pass_at_k({"a": [True, False], "b": [False, False]}, 1) == pytest.approx(0.25)


def test_maj_at_k():
    samples = samples_for(1, ["4", "4", "5", "5", "5"]) + samples_for(2, ["7", "7", "8"])
    golds = {"1": "4", "2": "7", "3": "1"}
    assert metrics.maj_at_k(GSM, samples, golds) == pytest.approx(1 / 3)
    assert metrics.maj_at_k(GSM, samples, golds, k=2) == pytest.approx(2 / 3)


def test_pair_diagnostics():
    ps = [{"id": "1", "chosen": "#### 4", "rejected": "#### 5", "weak_side": "chosen"},
          {"id": "2", "chosen": "#### 3", "rejected": "#### 2", "weak_side": "rejected"},
          {"id": "3", "chosen": "#### 3", "rejected": "#### 2", "weak_side": "rejected"}]
    d = metrics.pair_diagnostics(GSM, ps, [q(1, answer="4"), q(2, answer="2"), q(3)])
    assert d["n_pairs"] == 3 and d["n"] == 2 and d["pair_accuracy"] == 0.5
    assert d["weak_chosen_pair_accuracy"] == 1.0 and d["weak_rejected_rejected_accuracy"] == 1.0


def test_grade_records_names_row_without_gold():
    from w2s.io import DataError

    rows = [{"response": "#### 4", "gold": "4"}, {"response": "#### 4"}]
    with pytest.raises(DataError, match="row 2.*'gold'"):
        metrics.grade_records(GSM, rows, gold_field="gold", path="x.jsonl")
    graded = metrics.grade_records(GSM, rows[:1] + [{"response": "none", "gold": "1"}], gold_field="gold")
    assert [(r["pred"], r["correct"]) for r in graded] == [("4", True), ("", False)]


def test_scores_are_strict_with_lenient_beside_them():
    """A model that never states `#### N` scores 0 strict even when the toy task's lenient parser
    finds its last number (the outside evaluator's strict-match vs flexible-extract split)."""
    from w2s.tasks import make_task

    toy = make_task("toy")
    qs = [{"id": "a", "question": "?", "answer": "5"}, {"id": "b", "question": "?", "answer": "7"},
          {"id": "c", "question": "?", "answer": "9"}]
    greedy = [{"id": "a", "response": " 2 + 3 = 5\n#### 5"}, {"id": "b", "response": " 3 + 4 = 7. Result: 7"},
              {"id": "c", "response": " 4 + 5 = 9\n#####"}]
    s = metrics.score_generations(toy, qs, greedy)
    assert s["accuracy"] == pytest.approx(1 / 3) and s["correct"] == {"a": 1, "b": 0, "c": 0}
    assert s["accuracy_lenient"] == 1.0
    # a task with one parser reports one accuracy
    assert "accuracy_lenient" not in metrics.score_generations(GSM, [{"id": "a", "question": "?", "answer": "5"}],
                                                              [{"id": "a", "response": "#### 5"}])


def test_avg_at_k_is_the_samples_mean_accuracy():
    from w2s.method.metrics import avg_at_k

    per_q = {"a": [True, False, True, True], "b": [False] * 4, "c": [True] * 4}
    assert avg_at_k(per_q, {"a": "1", "b": "2", "c": "3"}, 4) == (0.75 + 0 + 1) / 3
    assert avg_at_k(per_q, {"a": "1", "b": "2", "c": "3", "d": "4"}, 2) == (0.5 + 0 + 1 + 0) / 4


def test_stage1_overlap_counts_what_stage1_already_learnt():
    from w2s.steps import stage1_overlap

    assert stage1_overlap(["a", "b", "c", "d"], ["b", "d", "x"]) == {"n": 4, "in_stage1": 2, "share_in_stage1": 0.5}
    assert stage1_overlap([], ["a"])["share_in_stage1"] is None
