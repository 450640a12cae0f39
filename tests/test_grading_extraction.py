"""Answer extraction on untrusted responses: linear in the length for every task, spent from the
task's grading budget, and unchanged on real data (issue 19, item 2).

Costs are CPU seconds of this process (time.process_time): what extraction costs, whatever else
the machine is running."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2s import grading
from w2s.grading import GradingBudget, last_boxed, math_equal, safe_for_sympy
from w2s.tasks import get_task
from w2s.tasks import toy as toy_module

MB = 1_000_000


def _loop(unit: str, n: int = MB) -> str:
    return (unit * (n // len(unit) + 1))[:n]


# What a weak model's degenerate loops look like, and shapes aimed at each task's parser.
ADVERSARIAL = {
    "boxed_loop": _loop("\\boxed{"),
    "fbox_fullwidth_loop": _loop("\\fbox {\uff12"),
    "frac_loop": "\\boxed{" + _loop("\\frac{"),
    "open_braces": "\\boxed{" + _loop("{"),
    "hashes": _loop("####"),
    "hash_lines": _loop("#### \n"),
    "digits": _loop("1"),
    "digits_commas": _loop("1,"),
    "answer_is": _loop("The answer is "),
    "markers": _loop("result = => "),
    "leaves": "leaves " + _loop("a"),
    "spaces": "answer:" + _loop(" ") + "x",
    "text_wrappers": "\\boxed{" + _loop("\\text{ ") + "}",
    "arabic_digits_bidi": _loop("\u0662\u200f"),
}
TASKS = {"gsm8k": {}, "math": {}, "toy": {}, "toy_strict": {"lenient": False}, "custom": {}}


@pytest.mark.parametrize("task_name", list(TASKS))
def test_one_megabyte_responses_extract_in_under_a_second_for_every_task(task_name):
    task = get_task(task_name.split("_")[0], **TASKS[task_name])
    times = {}
    for shape, response in ADVERSARIAL.items():
        start = time.process_time()
        task.extract_answer(response)
        times[shape] = time.process_time() - start
    slowest = max(times, key=times.get)
    assert times[slowest] < 1.0, (slowest, times[slowest])
    # the toy task's completion reads the response with the same lenient parser
    if task_name == "toy":
        start = time.process_time()
        task.completion(ADVERSARIAL["markers"])
        assert time.process_time() - start < 1.0


def test_megabyte_box_loops_still_find_the_right_box():
    math = get_task("math")
    start = time.process_time()
    assert math.extract_answer(_loop("\\boxed{") + "\\boxed{7}") == "7"  # 143k open boxes, then one closed
    assert math.extract_answer("\\boxed{1}" + _loop("\\boxed{")) == "1"  # falls back past all of them
    assert math.extract_answer("x" * MB + r"so \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert math.gold_answer({"solution": _loop("\\boxed{") + "\\boxed{8}"}) == "8"
    assert time.process_time() - start < 2.0


def _last_boxed_reference(text: str, window: int) -> str | None:
    """The former implementation (quadratic on box loops): every box scans its whole window."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, min(len(text), start + window)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["\\boxed{", "\\fbox {", "{", "}", "a", " ", "\\{", "1"]), max_size=40),
       st.integers(1, 30))
def test_last_boxed_agrees_with_the_former_scan(parts, window):
    text = "".join(parts)
    assert last_boxed(text, window=window) == _last_boxed_reference(text, window)


_MARKERS_BEFORE = re.compile(toy_module._MARKERS.pattern.replace("(?=[fartel=i])", "", 1), re.IGNORECASE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Final answer is ", "ANSWER: ", "result = ", "=> ", "Total is ", "ends with ",
                                 "Ends up with ", "leaves Tom with ", "In the end, Ann has ", "27", "-3",
                                 "1,000", ".", " ", "\n", "x", "İ", "answer"]), max_size=12))
def test_toy_marker_lookahead_matches_what_the_pattern_matched(parts):
    text = "".join(parts)
    assert [m.span() for m in toy_module._MARKERS.finditer(text)] == \
        [m.span() for m in _MARKERS_BEFORE.finditer(text)]


# ---------------------------------------------------------------- the budget

def test_long_responses_spend_the_budget_and_are_skipped_once_it_is_gone(capsys):
    math = get_task("math")
    math.budget = GradingBudget(seconds=0.01)
    loop = _loop("\\boxed{") + "\\boxed{5}"
    answers = [math.extract_answer(loop) for _ in range(20)]
    budget = math.budget
    assert budget.exhausted and budget.extraction_s >= budget.seconds
    assert answers[0] == "5" and answers[-1] == ""  # read while the budget lasted, then not
    assert budget.skipped and budget.skipped[-1][1] == "(answer extraction)"
    assert math.grading_report()["skipped"] == len(budget.skipped)
    assert "grading budget" in capsys.readouterr().err
    spent = budget.spent
    assert math.extract_answer(r"so \boxed{3}") == "3"  # a real response is still read ...
    assert budget.spent == spent  # ... and costs the budget nothing


def test_every_task_has_its_own_budget():
    gsm8k = get_task("gsm8k")
    assert gsm8k.grading_report() == {}
    assert gsm8k.extract_answer("so\n#### 4") == "4" and gsm8k.budget.spent == 0
    gsm8k.extract_answer(_loop("#### 1 or 2\n"))
    assert gsm8k.budget.spent > 0 and get_task("gsm8k").budget.spent == 0


# ---------------------------------------------------------------- power towers

@pytest.mark.parametrize("tower", [r"9^{9^{9}}", r"9^{9^9}", r"9^(9^9)", "9^9^9", r"x^{9^{9}}",
                                   r"2^{\frac{9^{9}}{2}}", r"9^{9^{9^{9^{9}}}}", r"e^{x^{y^{z}}}"])
def test_power_towers_are_refused(tower):
    assert not safe_for_sympy(tower)


@pytest.mark.parametrize("fine", [r"e^{x^2}", r"2^{2^{n}}", r"{9^9}^{9}", r"10^{6}", r"x^{2}+y^{3}",
                                  r"\left(\frac{1}{2}\right)^{3}", r"e^{i\pi}"])
def test_symbolic_exponents_and_plain_powers_are_not_towers(fine):
    assert safe_for_sympy(fine)


def test_a_tower_never_reaches_the_worker(monkeypatch):
    def no_worker():
        raise AssertionError("a power tower reached math-verify")

    grading.clear_cache()
    monkeypatch.setattr(grading.symbolic, "worker_pool", no_worker)
    assert not math_equal(r"9^{9^{9}}", "7") and not math_equal(r"7^{7^7}", "8")
    assert math_equal(r"9^{9^{9}}", r"9^{9^{9}}")  # identical text is still equal
    with pytest.raises(AssertionError, match="reached math-verify"):
        math_equal(r"e^{x^2}", r"e^{x^{2}}")  # a symbolic exponent does go to math-verify


# ---------------------------------------------------------------- real data, unchanged

def test_extraction_on_real_data_matches_the_former_box_scan(shared_data):
    math = get_task("math")
    rows = [json.loads(line) for line in open(shared_data / "math" / "test.jsonl")]
    for r in rows:
        assert last_boxed(r["solution"]) == _last_boxed_reference(r["solution"], 10_000)
    assert all(math.extract_answer(r["solution"]) == r["answer"] for r in rows)


def _canonical_reference(s: str) -> str:
    """The former per-character loop of canonical_text (after its superscript and NFKC steps)."""
    import unicodedata

    s = grading.text._SUPERSCRIPTS.sub(lambda m: "^{" + unicodedata.normalize("NFKC", m.group(0)) + "}", s)
    out = []
    for c in unicodedata.normalize("NFKC", s):
        if c.isascii():
            out.append(c)
        elif unicodedata.category(c) != "Cf":
            out.append(str(unicodedata.decimal(c)) if unicodedata.category(c) == "Nd"
                       else {"\u2044": "/", "\u2212": "-"}.get(c, c))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("25 x.-/") + ["\uff12", "\u0662", "\U0001d7d0", "\u200f", "\u202a",
                                                            "\ufeff", "\u2044", "\u2212", "\u00b2", "\u00e9",
                                                            "\u4e00", "\u0966"]) | st.characters(), max_size=30))
def test_canonical_text_table_agrees_with_the_former_loop(text):
    assert grading.canonical_text(text) == _canonical_reference(text)
