"""Equivalence: numbers (pure Python) and LaTeX (math-verify in a bounded worker)."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2s import grading
from w2s.grading import math_equal, math_equal_many, numbers_equal, parse_number, safe_for_sympy


# ---------------------------------------------------------------- numbers

@pytest.mark.parametrize("text,value", [
    ("72", 72), ("1,234", 1234), ("$1,234.50", Fraction("1234.5")), ("18 dollars", 18),
    ("50%", 50), ("-7", -7), ("\u22127", -7), ("3/4", Fraction(3, 4)), ("2 1/2", Fraction(5, 2)),
    ("4.20", Fraction("4.2")), ("7.0", 7), (".5", Fraction(1, 2)), ("x = 12", 12),
    ("\\$5", 5), ("10\\%", 10), ("1{,}000", 1000),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "five", "5:30", "1/0", "9" * 500, None])
def test_parse_number_refuses(text):
    assert parse_number(text) is None


@pytest.mark.parametrize("a,b,equal", [
    ("4.20", "4.2", True), ("7.0", "7", True), ("3/4", "0.75", True), ("$1,000", "1000", True),
    ("-3", "3", False), ("18 apples", "18", True), ("5:30", "5:40", False), ("5:30", "5:30", True),
    ("", "", False), ("", "0", False), ("abc", "abc", True), ("abc", "5", False), ("0.333", "1/3", False),
])
def test_numbers_equal(a, b, equal):
    assert numbers_equal(a, b) is equal
    assert numbers_equal(b, a) is equal


def _noisy(x: Fraction, draw) -> str:
    """A formatting of x as a GSM8K answer might write it."""
    neg, x = x < 0, abs(x)
    if x.denominator == 1 or draw(st.booleans()) and x.denominator in (2, 4, 5, 8, 10, 20, 25, 50, 100):
        whole = x.numerator // x.denominator
        frac = x - whole
        digits = str(whole)
        if draw(st.booleans()) and whole >= 1000:
            digits = f"{whole:,}"
        if frac:
            dec = str(float(frac))[1:]  # ".25"
            digits += dec + "0" * draw(st.integers(0, 2))
        elif draw(st.booleans()):
            digits += "." + "0" * draw(st.integers(1, 2))
    else:
        digits = f"{x.numerator}/{x.denominator}"
    prefix = draw(st.sampled_from(["", "$", " "]))
    suffix = draw(st.sampled_from(["", " dollars", "%", " apples.", " "]))
    return ("-" if neg else "") + prefix + digits + suffix


@st.composite
def noisy_pair(draw):
    x = Fraction(draw(st.integers(-10**7, 10**7)), draw(st.sampled_from([1, 1, 2, 4, 5, 3, 7, 100])))
    return x, _noisy(x, draw), _noisy(x, draw)


@given(noisy_pair())
def test_numbers_equal_stable_under_formatting_noise(triple):
    x, a, b = triple
    assert parse_number(a) == x, a
    assert numbers_equal(a, b) and numbers_equal(b, a)


@given(st.text(max_size=30), st.text(max_size=30))
def test_numbers_equal_symmetric_on_any_text(a, b):
    assert numbers_equal(a, b) == numbers_equal(b, a)
    assert not numbers_equal("", b)


# ---------------------------------------------------------------- LaTeX

@pytest.mark.parametrize("a,b", [
    (r"\frac{1}{2}", "0.5"), (r"\dfrac{3}{4}", r"\frac34"), (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"[2, 5)", r"x \in [2,5)"), (r"\{1, 2\}", r"\{2, 1\}"), (r"90^\circ", "90"), (r"\text{(C)}", "C"),
    (r"2\sqrt{2}", r"\sqrt{8}"), (r"x^2+2x+1", r"(x+1)^2"), (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
    ("1,000", "1000"), (r"-\frac{1}{3}", r"\frac{-1}{3}"),
])
def test_math_equal_true_both_ways(a, b):
    assert math_equal(a, b) and math_equal(b, a)


@pytest.mark.parametrize("a,b", [
    (r"\frac{1}{2}", "0.4"), ("(1,2)", "(2,1)"), (r"[2,5)", "(2,5]"), (r"x+1", "x+2"), ("", ""), ("3", ""),
])
def test_math_equal_false_both_ways(a, b):
    assert not math_equal(a, b) and not math_equal(b, a)


def test_math_equal_is_symmetric_where_math_verify_is_not():
    # verify(gold, pred) treats an assignment/equation gold specially; our relation may not.
    pairs = [("x=2", "2"), ("2", "x=2"), (r"k = \frac{1}{2}", "0.5"), ("y = 2x+1", "2x+1")]
    got = math_equal_many(pairs)
    assert got[0] == got[1]
    assert math_equal(pairs[2][0], pairs[2][1]) == math_equal(pairs[2][1], pairs[2][0])


LATEX_ATOMS = [r"\frac{1}{2}", "0.5", r"\sqrt{2}", r"2\pi", "3", "-4", r"\frac{\pi}{4}", "x+1", r"(1,2)",
               r"\{1,2\}", r"[0,1)", r"45^\circ", r"\text{yes}", "1000", r"\dfrac{7}{3}"]


def _format_noise(s: str, draw) -> str:
    if draw(st.booleans()):
        s = s.replace(r"\frac", r"\dfrac")
    if draw(st.booleans()):
        s = f" {s} "
    if draw(st.booleans()):
        s = s.replace("(", r"\left(").replace(")", r"\right)")
    if draw(st.booleans()):
        s = s.replace(",", ", ")
    return s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_math_equal_symmetric_and_stable_under_formatting(data):
    a = data.draw(st.sampled_from(LATEX_ATOMS))
    b = data.draw(st.sampled_from(LATEX_ATOMS))
    na, nb = _format_noise(a, data.draw), _format_noise(b, data.draw)
    assert math_equal(a, b) == math_equal(b, a)
    assert math_equal(na, nb) == math_equal(a, b)
    assert math_equal(a, na)


def test_safe_for_sympy_refuses_hostile_input():
    for s in [r"9^{9^{9^{9^{9}}}}", "9^9^9", "{" * 30 + "}" * 30, "x}", r"\frac{" * 20,
              "__import__('os').system('echo hi')", "1" * 100, "a" * 1000]:
        assert not safe_for_sympy(s), s
    assert safe_for_sympy(r"\frac{1}{2}") and safe_for_sympy("e^{x^2}")


def test_math_equal_bounded_on_hostile_input():
    t = time.monotonic()
    assert not math_equal(r"9^{9^{9^{9^{9}}}}", "1")
    assert math_equal(r"9^{9^{9^{9^{9}}}}", r"9^{9^{9^{9^{9}}}}")  # identical text is still equal
    assert not math_equal("__import__('os').system('touch /tmp/pwned')", "0")
    assert time.monotonic() - t < 10


#: Admitted by safe_for_sympy (a big power, not a tower) yet seconds in sympy: a slow comparison.
SLOW_IN_SYMPY = r"%d^{123456789}"


def test_worker_timeout_kills_and_recovers():
    """A comparison that overruns is False, the worker restarts, and later items still work."""
    # 7^{123456789} passes the pre-filter (a big power, not a tower) but sympy needs seconds for it.
    grading.clear_cache()
    before = grading.worker_restarts()
    t = time.monotonic()
    got = math_equal_many([(SLOW_IN_SYMPY % 7, "7"), (r"\frac{1}{2}", "0.5")], timeout=0.5)
    assert time.monotonic() - t < 8
    assert got == [False, True]
    assert grading.worker_restarts() > before
    assert math_equal(r"\frac{2}{4}", "0.5")


def test_math_equal_from_threads():
    results = {}

    def run(i):
        results[i] = math_equal(r"\frac{%d}{2}" % (2 * i), str(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert results == {i: True for i in range(4)}


def _in_daemon_child(q):
    q.put(math_equal(r"\frac{3}{6}", "0.5"))


def test_math_equal_inside_a_daemonic_worker_process():
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_in_daemon_child, args=(q,), daemon=True)
    p.start()
    assert q.get(timeout=60) is True
    p.join(10)


# ---------------------------------------------------------------- strict numbers, Unicode, budget

@pytest.mark.parametrize("text", ["25 or 30", "25*2", "25^{99}", "25!", "25, 30", "25,30", "48/2 = 24",
                                  "25 squared", "25 (approx)", "25 x 2", "25 + 5", "-$-25", "5x", "1e3"])
def test_parse_number_refuses_hedged_or_computed_answers(text):
    """One answer is one number: a second number or an operator after it is not that number."""
    assert parse_number(text) is None
    assert not numbers_equal(text, "25") and not numbers_equal("25", text)


@pytest.mark.parametrize("text,value", [
    ("25", 25), ("$25", 25), ("25.", 25), ("1,000", 1000), ("25 dollars", 25), ("$1,000.00", 1000),
    ("-25", -25), ("$-25", -25), ("25 square feet.", 25), ("x = 25", 25), ("25 %", 25), ("€25", 25),
])
def test_parse_number_keeps_legitimate_forms(text, value):
    assert parse_number(text) == value


UNICODE_25 = ["\uff12\uff15", "\u0662\u0665", "\U0001d7d0\U0001d7d3", "\u06f2\u06f5", "\u200f25",
              "2\u200e5", "\u202a25\u202c", "\u206625\u2069", "\ufeff25", "25\u200b"]


@pytest.mark.parametrize("variant", UNICODE_25)
def test_unicode_digits_and_bidi_marks_same_verdict_in_every_task(variant):
    """Full-width, Arabic-Indic, math-bold digits and bidi/format marks: NFKC + format
    characters dropped, then 25 everywhere (and never 26)."""
    from w2s.tasks import get_task

    assert grading.canonical_text(variant) == "25"
    gsm8k, math, toy = get_task("gsm8k"), get_task("math"), get_task("toy")
    verdicts = {
        "gsm8k": gsm8k.is_correct(f"so\n#### {variant}", "25"),
        "math": math.is_correct(rf"so \boxed{{{variant}}}", "25"),
        "toy": toy.is_correct(f"so\n#### {variant}", "25"),
        "gsm8k_eq": gsm8k.equivalent(variant, "25"), "math_eq": math.equivalent(variant, "25"),
        "toy_eq": toy.equivalent(variant, "25"),
    }
    assert all(verdicts.values()), verdicts
    assert not any([gsm8k.equivalent(variant, "26"), math.equivalent(variant, "26"), toy.equivalent(variant, "26")])


def test_superscripts_are_powers_not_digits():
    assert grading.canonical_text("5\u00b2") == "5^{2}"  # NFKC alone would give "52"
    assert not numbers_equal("5\u00b2", "52") and parse_number("10\u00b9\u00b2") is None


def test_budget_bounds_a_file_of_hostile_rows_and_reports_them(monkeypatch, capsys):
    """Slow comparisons spend a per-task budget; after it, hard comparisons are strict
    strings (False), skipped without the worker, and reported."""
    from w2s.tasks.math import MathTask

    grading.clear_cache()
    monkeypatch.setattr(grading.budget, "SLOW_COMPARISON", 0.2)
    task = MathTask(timeout=0.5, budget=0.6)
    hostile = [(SLOW_IN_SYMPY % k, str(k)) for k in range(7, 47)]  # 40 rows, each > 0.5 s in sympy
    start = time.monotonic()
    got = [task.equivalent(a, b) for a, b in hostile]
    assert time.monotonic() - start < 20  # about 2 rows x (0.5 s + a worker restart), not 40
    assert got == [False] * len(hostile)
    report = task.grading_report()
    assert report["slow"] >= 1 and report["slow"] + report["skipped"] == len(hostile)
    assert report["spent_s"] >= 0.6 and report["skipped_examples"]
    assert "grading budget" in capsys.readouterr().err
    # a legitimate hard row after the budget: strict strings (reported), not sympy
    assert not task.equivalent(r"\frac{1}{2}", "0.5") and task.grading_report()["skipped"] == report["skipped"] + 1
    assert task.equivalent(r"\frac{1}{2}", r"\dfrac{1}{2}")  # equal normal forms need no worker
    assert MathTask().equivalent(r"\frac{1}{2}", "0.5")  # a new task, a new budget; nothing cached
