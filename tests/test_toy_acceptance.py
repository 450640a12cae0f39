"""The toy world's acceptance checks per sample (w2s.toy.acceptance)."""

from __future__ import annotations

import pytest

from w2s.tasks import get_task
from w2s.toy.acceptance import error_kind, nouns_right, sample_diagnostics, slip_rates

Q = {"id": "q1", "question": "Mia has 12 apples. Leo has 30 apples. She buys 5 more apples. "
                             "How many apples does Mia have now?", "answer": "17"}


@pytest.mark.parametrize("response, answer, kind", [
    (" Mia has 12 apples: 12 + 5 = 18.\n#### 18", "18", "false_equation"),           # a slip
    (" Leo has 30 apples: 30 + 5 = 35.\n#### 35", "35", "plan"),                      # the distractor used
    (" She buys 5 more apples: 12 + 6 = 18.\n#### 18", "18", "plan"),                 # a wrong operand
    (" She buys 5 more apples: 12 + 5 = 17.\n#### 71", "71", "final_copy"),
    (" She buys 5 more apples: 12 + 5 = 17. Result: 17", "", "no_answer"),
    (" Mia has 19 apples.\n#### 19", "19", "no_equation"),
])
def test_error_kind(response, answer, kind):
    assert error_kind(response, answer, "17") == kind


def test_slip_rates_count_false_equations_per_operation_before_the_marker():
    rates = slip_rates([" 12 + 5 = 18. 18 - 3 = 15.\n#### 15 + 1 = 9", " 7+5=12, 12 * 2 = 24, 24 / 2 = 13"])
    assert rates["+"] == {"equations": 2, "false": 1, "rate": 0.5}      # `15 + 1 = 9` after #### not read
    assert rates["-"]["false"] == 0 and rates["*"]["rate"] == 0.0 and rates["/"] == {"equations": 1, "false": 1,
                                                                                      "rate": 1.0}
    assert slip_rates([])["+"] == {"equations": 0, "false": 0, "rate": 0.0}


def test_nouns_right_allows_the_question_nouns_only():
    assert nouns_right(" Leo has 30 apples: skip. She buys 5 more apples: 12 + 5 = 17.", Q["question"])
    assert not nouns_right(" She buys 5 more eggs: 12 + 5 = 17.", Q["question"])
    assert nouns_right(" pineapples and apples", "Mia has apples.")   # whole words only


def test_sample_diagnostics_counts_wrong_samples_by_kind():
    samples = [{"id": "q1", "response": " She buys 5 more apples: 12 + 5 = 17.\n#### 17"},
               {"id": "q1", "response": " She buys 5 more eggs: 12 + 5 = 18.\n#### 18"},
               {"id": "q1", "response": " Leo has 30 apples: 30 + 5 = 35.\n#### 35"},
               {"id": "q1", "response": " 12 + 5 = 17. Result: 17"},      # right only to a lenient reader
               {"id": "other", "response": "#### 1"}]
    d = sample_diagnostics(get_task("toy"), [Q], samples)
    assert d["samples"] == 4 and d["wrong"] == 3
    assert d["error_kinds"] == {"no_answer": 1, "false_equation": 1, "plan": 1, "final_copy": 0, "no_equation": 0}
    assert d["plan_share"] == pytest.approx(1 / 3) and d["nouns_right"] == 0.75


def test_lenient_vote_reads_any_marker_and_pairs_the_vote_with_greedy():
    from w2s.toy.acceptance import lenient_vote

    questions = [{"id": "a", "answer": "7"}, {"id": "b", "answer": "3"}]
    greedy = [{"id": "a", "response": " 3 + 3 = 6. Result: 6"}, {"id": "b", "response": " 1 + 2 = 3.\n#### 3"}]
    samples = [{"id": "a", "response": r} for r in (" Result: 7", " => 7", " Result: 6")] + \
              [{"id": "b", "response": r} for r in (" Result: 3", " Result: 4", " Result: 5")]
    v = lenient_vote(get_task("toy"), questions, greedy, samples)
    # a: greedy wrong, the vote right (7, 7, 6); b: greedy right, no majority answer wins by count: the first (3)
    assert v["k"] == 3 and v["greedy"] == 0.5 and v["avg@k"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert v["maj@k"] == 1.0 and v["maj_minus_greedy"]["delta"] == 0.5 and v["maj_minus_greedy"]["a_only"] == 1


def test_vote_room_counts_what_the_vote_wins_and_loses_and_how_often_the_right_answer_is_sampled():
    from w2s.toy.acceptance import vote_room

    questions = [{"id": q, "answer": "7"} for q in "abc"]
    greedy = [{"id": "a", "response": " 6\n#### 6"}, {"id": "b", "response": " 6\n#### 6"},
              {"id": "c", "response": " 7\n#### 7"}]
    answers = {"a": ("7", "7", "6", "5"),      # greedy wrong, the vote right: won
               "b": ("6", "6", "6", "7"),      # greedy wrong, the error repeated by the samples
               "c": ("5", "5", "7", "5")}      # greedy right, the vote wrong: lost
    samples = [{"id": q, "response": f" {a}\n#### {a}"} for q, ans in answers.items() for a in ans]
    room = vote_room(get_task("toy"), questions, greedy, samples)
    assert room == {"n": 3, "greedy_wrong": 2, "won": 1, "lost": 1,
                    "right_share_where_greedy_wrong": pytest.approx((2 / 4 + 1 / 4) / 2),
                    "top_wrong_share_where_greedy_wrong": pytest.approx((1 / 4 + 3 / 4) / 2)}


def test_vote_by_plan_splits_the_samples_where_greedy_is_wrong_by_the_greedy_answers_plan():
    from w2s.toy.acceptance import vote_by_plan

    questions = [{"id": q, "answer": "7"} for q in "abc"]
    restate, story, chain = " Mia has 7 pens: {a}\n#### {a}", " She buys 2, so now she has {a}.\n#### {a}", " Start: {a}.\n#### {a}"
    greedy = [{"id": "a", "response": restate.format(a=6)}, {"id": "b", "response": chain.format(a=7)},
              {"id": "c", "response": chain.format(a=5)}]
    samples = [{"id": "a", "response": story.format(a=7)}, {"id": "a", "response": story.format(a=7)},
               {"id": "a", "response": restate.format(a=6)}, {"id": "a", "response": chain.format(a=7)},
               {"id": "b", "response": story.format(a=1)},                   # greedy right: not counted
               {"id": "c", "response": chain.format(a=5)}, {"id": "c", "response": chain.format(a=7)}]
    room = vote_by_plan(get_task("toy"), questions, greedy, samples)
    assert room == {"samples": 6, "in_greedy_plan": pytest.approx(3 / 6),
                    "right_in_greedy_plan": pytest.approx(1 / 3), "right_in_other_plans": 1.0,
                    "right_in_several_plans": 1}                              # a: story and chain
    assert vote_by_plan(get_task("toy"), questions, greedy, [])["right_in_other_plans"] is None


def _fake_run(root, few_strict, few_lenient, sweep_best):
    """A dev-scored run's files as the pipeline writes them (2 dev questions, k = 2)."""
    import json

    from w2s.io import write_json, write_jsonl

    qs = [{"id": "q1", "question": Q["question"], "answer": "17", "solution": "Mia has 12 apples. Leo has 30 apples: "
           "skip. She buys 5 more apples: 12 + 5 = 17.\n#### 17"},
          {"id": "q2", "question": "Ava has 4 eggs. She doubles her eggs. How many eggs does Ava have now?", "answer": "8",
           "solution": "Ava has 4 eggs. She doubles her eggs: 4 * 2 = 8.\n#### 8"}]
    write_jsonl(root / "data" / "questions" / "dev.jsonl", qs)
    ev = root / "eval_dev"
    for name, acc in (("weak", 0.3), ("full_weak", 0.4)):
        write_json(ev / f"{name}.json", {"accuracy": acc, "accuracy_lenient": acc})
    write_json(ev / "strong_fewshot.json", {"accuracy": few_strict, "accuracy_lenient": few_lenient,
                                            "generations": {"greedy": "f.greedy.jsonl"}})
    write_jsonl(ev / "f.greedy.jsonl", [{"id": "q1", "response": " 12 + 5 = 17.\n#### 17"}])
    write_json(ev / "m.json", {"accuracy": 0.75, "ci95": [0.7, 0.8], "generations": {"greedy": "m.greedy.jsonl"}})
    write_jsonl(ev / "m.greedy.jsonl", [{"id": "q1", "response": " 12 + 5 = 18.\n#### 18"},
                                         {"id": "q2", "response": " 4 * 2 = 8.\n#### 8"}])
    rows = []
    for t in (0.3, 0.5, 0.7, 1.0):
        write_json(ev / "temperatures" / f"m.t{t:g}.json", {"generations": {"samples": f"m.t{t:g}.samples.jsonl"}})
        write_jsonl(ev / "temperatures" / f"m.t{t:g}.samples.jsonl",
                    [{"id": "q1", "response": " She buys 5 more apples: 5 + 12 = 17.\n#### 17"},
                     {"id": "q1", "response": " Leo has 30 apples: 30 + 5 = 35.\n#### 35"},
                     {"id": "q2", "response": " She doubles her eggs: 4 + 4 = 8.\n#### 8"},
                     {"id": "q2", "response": " She doubles her eggs: 4 * 2 = 9.\n#### 9"}])
        gain = sweep_best if t == 0.7 else 0.0
        rows.append({"temperature": t, "greedy": 0.75, "maj@k": 0.75 + gain, "avg@k": 0.5, "maj_minus_greedy": gain,
                     "maj_minus_greedy_ci95": [gain - 0.01, gain + 0.01]})
    (root / "metrics.json").write_text(json.dumps({"temperature_sweep": {"eval_name": "m", "rows": rows}}))
    return root


def test_world_acceptance_reads_a_run_and_judges_each_criterion(tmp_path):
    from w2s.toy.acceptance import world_acceptance

    ok = world_acceptance(_fake_run(tmp_path / "a", 0.5, 0.52, 0.04), get_task("toy"))
    c = ok["criteria"]
    assert c["1_fewshot_strict_vs_lenient"]["met"] and c["2_self_consistency"]["met"]
    assert c["2_self_consistency"]["best_temperature"] == 0.7 and c["4_stage1"]["met"]
    # 2 wrong samples of 4 at T 1.0: one plan-level (the distractor used), one a false equation
    three = c["3_errors_and_nouns"]
    assert three["wrong"] == 2 and three["plan_share"] == 0.5 and three["nouns_right"] == 1.0 and three["met"]
    assert ok["accepted"] and ok["diagnostics"]["lenient_vote"][0.7]["k"] == 2
    assert set(ok["diagnostics"]["vote_room"]) == set(ok["diagnostics"]["lenient_vote"])
    slips = ok["diagnostics"]["greedy_slip_rates"]             # the files that name their generations
    assert set(slips) == {"strong_fewshot", "m"} and slips["m"]["+"]["false"] == 1 and slips["m"]["*"]["rate"] == 0
    split = ok["diagnostics"]["greedy_by_distractor"]           # q1 skips a distractor; M_plus wrong there
    assert split["m"] == {"with": {"n": 1, "accuracy": 0.0}, "without": {"n": 1, "accuracy": 1.0}}
    assert split["strong_fewshot"]["with"] == {"n": 1, "accuracy": 1.0} and split["strong_fewshot"]["without"]["n"] == 0
    plans = ok["diagnostics"]["plan_mix_by_distractor"]["m"]    # q1 (a distractor) answered wrong
    assert plans["with"]["restate"] == {"share": 1.0, "accuracy": 0.0} and plans["without"]["restate"]["accuracy"] == 1.0
    assert ok["diagnostics"]["plan_mix_by_distractor"]["strong_fewshot"]["without"]["story"]["share"] == 0.0
    bad = world_acceptance(_fake_run(tmp_path / "b", 0.0, 0.3, 0.02), get_task("toy"))
    assert not bad["criteria"]["1_fewshot_strict_vs_lenient"]["met"] and not bad["criteria"]["2_self_consistency"]["met"]
    assert bad["criteria"]["4_stage1"]["met"] and not bad["accepted"]     # few-shot 0 < M_plus's CI: 4 holds


def test_distractor_split_reads_the_question_when_the_gold_leaves_the_distractor_out():
    from w2s.toy.acceptance import accuracy_by_distractor

    steps = [["start", 3], ["add", 2]]
    questions = [  # v20: a gold that passes over its distractor; a record without steps counts its gold's equations
        {"id": "a", "answer": "5", "steps": steps, "question": "Mia has 3 apples. Leo has 9 apples. She buys 2 more "
         "apples. How many apples does Mia have now?", "solution": "Mia has 3 apples. She buys 2 more apples: 3 + 2 = 5.\n#### 5"},
        {"id": "b", "answer": "5", "steps": steps, "question": "Mia has 3 apples. She buys 2 more apples. How many "
         "apples does Mia have now?", "solution": "Mia has 3 apples. She buys 2 more apples: 3 + 2 = 5.\n#### 5"},
        {"id": "c", "answer": "5", "question": "Mia has 3 apples. Mia is 9 years old. She buys 2 more apples. How many "
         "apples does Mia have now?", "solution": "Mia has 3 apples. She buys 2 more apples: 3 + 2 = 5.\n#### 5"}]
    greedy = [{"id": "a", "response": " 3 + 9 = 12.\n#### 12"}, {"id": "b", "response": " 3 + 2 = 5.\n#### 5"},
              {"id": "c", "response": " 3 + 2 = 5.\n#### 5"}]
    split = accuracy_by_distractor(get_task("toy"), questions, greedy)
    assert split == {"with": {"n": 2, "accuracy": 0.5}, "without": {"n": 1, "accuracy": 1.0}}
    assert split == accuracy_by_distractor(get_task("toy"), [{k: v for k, v in q.items() if k != "steps"}
                                                           for q in questions], greedy)


def test_plan_mix_tells_each_plan_and_its_accuracy():
    from w2s.toy.acceptance import plan_mix
    from w2s.toy.solutions import solution_plan

    questions = [{"id": "a", "answer": "5"}, {"id": "b", "answer": "5"}]
    gens = [{"id": "a", "response": " Start: 3. 3 + 2 = 5.\n#### 5"},
            {"id": "a", "response": " Mia has 3 apples. She buys 2 more apples, so now she has 3 + 2 = 5.\n#### 5"},
            {"id": "b", "response": " Mia has 3 apples. She buys 2 more apples: 3 + 2 = 6.\n#### 6"},
            {"id": "b", "response": " Mia has 3 apples. She buys 2 more apples: 3 + 2 = 5.\n#### 5"},
            {"id": "zz", "response": " Start: 1.\n#### 1"}]                  # not a question: not counted
    mix = plan_mix(get_task("toy"), questions, gens)
    assert mix == {"restate": {"share": 0.5, "accuracy": 0.5}, "equations": {"share": 0.25, "accuracy": 1.0},
                   "story": {"share": 0.25, "accuracy": 1.0}}
    assert [solution_plan(g["response"]) for g in gens[:3]] == ["equations", "story", "restate"]


def test_base_screen_samples_the_strong_bases_fewshot_prompts_and_reads_its_doubt(tmp_path):
    """The screen decodes the run's own few-shot prompts (here through the replay backend), writes only
    under its out dir, and measures the samples where the base's greedy answer (the run's) is wrong."""
    import json

    from w2s.io import write_json, write_jsonl
    from w2s.toy.acceptance import base_screen

    run = _fake_run(tmp_path / "run", 0.5, 0.52, 0.04)
    ev = run / "eval_dev"
    write_jsonl(ev / "f.greedy.jsonl", [{"id": "q1", "prompt": "P1", "response": " 12 + 30 = 42.\n#### 42"},
                                        {"id": "q2", "prompt": "P2", "response": " 4 * 2 = 8.\n#### 8"}])
    recorded = tmp_path / "base_outputs.jsonl"     # the "model": q1 right in 1 of 3 samples, q2 in 3 of 3
    write_jsonl(recorded, [{"id": q, "sample_index": i, "response": r, "finish_reason": "stop"} for q, rs in (
        ("q1", [" 12 + 30 = 42.\n#### 42", " She buys 5 more apples, so now she has 12 + 5 = 17.\n#### 17",
                " 12 + 30 = 42.\n#### 42"]), ("q2", [" 4 * 2 = 8.\n#### 8"] * 3)) for i, r in enumerate(rs)])
    write_json(ev / "strong_fewshot.json", {**json.loads((ev / "strong_fewshot.json").read_text()),
                                            "model": str(recorded), "backend": "replay", "max_new_tokens": 80, "seed": 0})
    before = sorted(p for p in run.rglob("*"))
    screen = base_screen(run, get_task("toy"), tmp_path / "screen", n=3)
    assert sorted(p for p in run.rglob("*")) == before                      # the run is only read
    assert screen["greedy_wrong"] == 1 and screen["right_share_where_greedy_wrong"] == pytest.approx(1 / 3)
    assert screen["top_wrong_share_where_greedy_wrong"] == pytest.approx(2 / 3) and screen["won"] == 0
    assert screen["plans"]["story"]["share"] == pytest.approx(1 / 6) and screen["k"] == 3
    assert (tmp_path / "screen" / "strong_fewshot.t0.7.samples.jsonl").exists()
