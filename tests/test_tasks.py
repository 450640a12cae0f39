"""Tasks: prompts, gold and predicted answer extraction, equivalence; real data where present."""

from __future__ import annotations

import json
import time

import pytest

from w2s.tasks import Task, get_task, make_task, register_task, task_names
from w2s.tasks.base import TASKS
from w2s.tasks.math import last_boxed


def test_registry():
    assert {"gsm8k", "math", "custom", "toy"} <= set(task_names())
    with pytest.raises(ValueError, match="unknown task 'gsm8kk'.*did you mean 'gsm8k'"):
        get_task("gsm8kk")
    assert TASKS.get("math").obj is type(get_task("math"))


class ShoutTask(Task):
    """A task defined outside w2s, named in a config as "module:ShoutTask"."""

    def __init__(self, marker: str = "ANSWER"):
        self.marker = marker

    def find_answer(self, text: str) -> str:
        head, sep, tail = text.rpartition(self.marker + ":")
        return tail.strip() if sep else ""

    def gold_answer(self, row: dict) -> str:
        return str(row["answer"])

    def equivalent(self, a: str, b: str) -> bool:
        return bool(a) and a.lower() == b.lower()


def test_a_task_from_outside_w2s_by_module_and_class():
    spec = f"{__name__}:ShoutTask"
    task = make_task({"name": spec, "marker": "FINAL"})
    assert isinstance(task, ShoutTask) and task.extract_answer("x FINAL: Yes") == "Yes"
    assert task.is_correct("FINAL: yes", "YES") and spec not in task_names()
    with pytest.raises(ValueError, match="does not take these options"):
        make_task({"name": spec, "nope": 1})
    with pytest.raises(ValueError, match="not a Task subclass"):
        make_task(f"{__name__}:test_registry")
    with pytest.raises(ValueError, match="cannot import"):
        make_task("no_such_module_w2s:Task")


def test_register_task_refuses_a_taken_name():
    class Other(ShoutTask):
        name = "gsm8k"

    with pytest.raises(ValueError, match="already registered"):
        register_task(Other)
    assert type(get_task("gsm8k")).__name__ == "GSM8KTask"
    with pytest.raises(ValueError, match="needs a name"):
        register_task(ShoutTask)


# ---------------------------------------------------------------- gsm8k

def test_gsm8k_prompt_and_completion():
    t = get_task("gsm8k")
    assert t.prompt("What is 2+2?") == "Question: What is 2+2?\nAnswer:"
    assert t.completion("2+2 = 4\n#### 4\n\nQuestion: next") == " 2+2 = 4\n#### 4"
    fs = t.fewshot_prompt([("A?", "a\n#### 1")], "B?")
    assert fs == "Question: A?\nAnswer: a\n#### 1\n\nQuestion: B?\nAnswer:"


@pytest.mark.parametrize("response,answer", [
    ("48/2 = 24\n#### 72", "72"),
    ("x\n#### 5\nmore\n#### 7", "7"),
    ("x\n#### 5\nQuestion: another one\nAnswer: y\n#### 9", "5"),  # run-on is cut
    ("so #### 5 Question: y #### 9", "5"),
    ("So she earns $10.\nThe answer is $1,000.", "$1,000"),
    ("no final answer here", ""),
    ("#### ", ""),
    ("#### " + "1" * 500, ""),  # degenerate loop
    ("", ""),
])
def test_gsm8k_extract_answer(response, answer):
    assert get_task("gsm8k").extract_answer(response) == answer


def test_gsm8k_gold_and_solution():
    t = get_task("gsm8k")
    train_row = {"question": "q", "answer": "Half is 48/2 = <<48/2=24>>24.\n#### 72"}
    assert t.gold_answer(train_row) == "72"
    assert t.gold_solution(train_row) == "Half is 48/2 = 24.\n#### 72"
    test_row = {"question": "q", "answer": "18", "solution": "a <<1+1=2>>2\n#### 18"}
    assert t.gold_answer(test_row) == "18" and t.gold_solution(test_row) == "a 2\n#### 18"
    assert t.gold_answer({"gold": "5"}) == "5"
    with pytest.raises(KeyError):
        t.gold_answer({})


def test_gsm8k_equivalence():
    t = get_task("gsm8k")
    assert t.equivalent("4.20", "4.2") and t.equivalent("$1,000", "1000") and t.equivalent("3/4", "0.75")
    assert not t.equivalent("", "") and not t.equivalent("5", "6")
    assert t.is_correct("...\n#### 7.0", "7")


def test_gsm8k_load_questions(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"id": 3, "question": "Q1", "answer": "a <<2*3=6>>6\n#### 6"},
        {"question": "Q2", "answer": "b\n#### 1,000"},
    ]) + "\n")
    qs = get_task("gsm8k").load_questions(str(p))
    assert qs == [{"id": "3", "question": "Q1", "answer": "6", "solution": "a 6\n#### 6"},
                  {"id": "train-1", "question": "Q2", "answer": "1,000", "solution": "b\n#### 1,000"}]


def test_gsm8k_real_weak_outputs_agree_with_recorded_results(shared_data):
    """Our grader vs the authors' recorded flags: only trailing-zero decimals may differ,
    and there our grader is right."""
    t = get_task("gsm8k")
    rows = [json.loads(line) for line in open(shared_data / "weak_outputs" / "gsm8k_train_2_mistral_7b.jsonl")]
    disagree = [r for r in rows if t.is_correct(r["response"], r["gold"]) != r["result"]]
    assert len(disagree) <= 0.005 * len(rows)
    for r in disagree:
        pred = t.extract_answer(r["response"])
        assert not r["result"] and float(pred) == float(r["gold"]) and pred != r["gold"], r["id"]


@pytest.mark.parametrize("line", ["25 or 30", "25*2", "25^{99}", "25!", "25, 30", "48/2 = 24", "25 squared"])
def test_hedged_final_answer_lines_are_not_the_number(line):
    """A '####' line with several numbers or an operator after the number is not that number,
    so it is neither correct nor agreeing with a plain 25 in select."""
    t = get_task("gsm8k")
    response = f"Step one.\n#### {line}"
    assert not t.is_correct(response, "25")
    assert not t.is_correct(response, "30") and not t.is_correct(response, "50")
    assert not t.equivalent(t.extract_answer(response), t.extract_answer("so\n#### 25"))


@pytest.mark.parametrize("line,gold", [("25", "25"), ("$25", "25"), ("25.", "25"), ("1,000", "1000"),
                                       ("25 dollars", "25"), ("$1,234.50", "1234.5")])
def test_legitimate_final_answer_lines_still_count(line, gold):
    assert get_task("gsm8k").is_correct(f"so\n#### {line}", gold)


def test_gsm8k_real_weak_outputs_with_several_numbers_are_not_numbers(shared_data):
    """The real weak outputs hold a few multi-number final lines ('9, 16', '25,25,25,25'); none
    of them reads as its first number any more, and no verdict against gold changes."""
    import re

    from w2s.grading import parse_number

    t = get_task("gsm8k")
    rows = [json.loads(line) for line in open(shared_data / "weak_outputs" / "gsm8k_train_2_mistral_7b.jsonl")]
    preds = {r["id"]: t.extract_answer(r["response"]) for r in rows}
    multi = [i for i, p in preds.items()  # a fraction like 10/3 is one number
             if "/" not in p and len(re.findall(r"\d+(?:,\d{3}(?!\d))*(?:\.\d+)?", p)) > 1]
    assert len(multi) >= 5
    assert all(parse_number(preds[i]) is None for i in multi)
    assert sum(t.is_correct(r["response"], r["gold"]) for r in rows) == 4620  # as before the change


# ---------------------------------------------------------------- math

@pytest.mark.parametrize("text,boxed", [
    (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
    (r"\boxed{1} then \boxed{ \{1,2\} }", r"\{1,2\}"),
    (r"\boxed{x^{2}} and \boxed{unclosed", "x^{2}"),
    (r"\fbox{3}", "3"),
    ("nothing", None),
])
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


def test_math_task_extraction_and_gold():
    t = get_task("math")
    assert t.rename == {"problem": "question"}
    assert t.extract_answer(r"We get $\boxed{\dfrac{3}{4}}$.") == r"\dfrac{3}{4}"
    assert t.extract_answer("So the answer is: $\\frac{1}{2}$.") == r"\frac{1}{2}"
    assert t.extract_answer("The answer is: 5") == "5"
    assert t.extract_answer("no answer") == ""
    assert t.gold_answer({"solution": r"so \boxed{7}"}) == "7"
    assert t.gold_answer({"answer": "8", "solution": r"\boxed{7}"}) == "8"
    assert t.equivalent(r"\dfrac{3}{4}", "0.75")


def test_math_extraction_is_fast_on_a_1mb_response():
    t = get_task("math")
    big = "x" * 1_000_000 + r"\boxed{42}"
    start = time.monotonic()
    assert t.extract_answer(big) == "42"
    assert t.extract_answer(r"\boxed{" + "{" * 500_000) == ""
    assert time.monotonic() - start < 2


def test_math_load_questions(shared_data):
    qs = get_task("math").load_questions(str(shared_data / "math" / "test.jsonl"))
    assert len(qs) == 500 and qs[0]["id"] == "test-0" and qs[0]["question"].startswith("Convert the point")
    assert qs[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)" and r"\boxed" in qs[0]["solution"]


def test_math_gold_solutions_grade_correct(shared_data):
    """A slice of MATH500: each gold solution's boxed answer equals the stated answer
    (the full 500-row timing is in bench/grading.py)."""
    t = get_task("math")
    rows = [json.loads(line) for line in open(shared_data / "math" / "test.jsonl")][:150]
    wrong = [r["answer"] for r in rows if not t.is_correct(r["solution"], r["answer"])]
    assert len(wrong) <= 1, wrong


# ---------------------------------------------------------------- custom

def test_custom_task_fields_regex_and_equivalence(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"qid": "a", "problem": "1+1?", "final": "ANSWER: 2"}) + "\n")
    t = get_task("custom", question_field="problem", answer_field="final", id_field="qid",
                 answer_regex=r"ANSWER:\s*(\S+)")
    qs = t.load_questions(str(p))
    assert qs == [{"id": "a", "question": "1+1?", "answer": "2"}]
    assert t.extract_answer("blah ANSWER: 3 ANSWER: 2.0") == "2.0"
    assert t.is_correct("ANSWER: 2.00", "2")
    exact = get_task("custom", equivalence="exact", prompt_template="Q: {question}\nA:")
    assert exact.prompt("x") == "Q: x\nA:"
    assert exact.equivalent("Paris", " Paris ") and not exact.equivalent("2.0", "2")
    assert exact.extract_answer("so #### Paris") == "Paris"
    with pytest.raises(ValueError):
        get_task("custom", equivalence="fuzzy")
    with pytest.raises(ValueError):
        get_task("custom", answer_regex="(")
