"""CLI: w2s grade / select / pairs / export on files, human output and --json summaries."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from w2s.cli import data
from w2s.io import read_jsonl, write_jsonl
from w2s.tasks import get_task

GSM = get_task("gsm8k")


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    data.register(a)
    return a


def run(app, *args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def gen(i, answer, body="w", k=0, **extra):
    return {"id": str(i), "prompt": GSM.prompt(f"Q{i}?"), "response": f"{body}\n#### {answer}",
            "sample_index": k, **extra}


def test_grade(app, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, [gen(1, "4.20", gold="4.2"), gen(2, "5", gold="6"), {"id": "3", "response": "?", "gold": "1"}])
    r = run(app, "grade", "--task", "gsm8k", "--input", inp, "--out", out, "--gold-field", "gold", "--json")
    assert last_json(r) == {"n": 3, "correct": 1, "accuracy": pytest.approx(1 / 3)}
    assert "1 correct" in r.stdout
    rows = read_jsonl(out)
    assert [(x["pred"], x["correct"]) for x in rows] == [("4.20", True), ("5", False), ("", False)]
    assert rows[0]["prompt"] == GSM.prompt("Q1?")  # input fields carried


def test_grade_names_the_row_without_gold(app, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [gen(1, "4", gold="4"), gen(2, "5")])
    r = run(app, "grade", "--task", "gsm8k", "--input", inp, "--out", tmp_path / "o.jsonl",
            "--gold-field", "gold", code=2)
    assert "row 2" in r.output and "gold" in r.output and str(inp) in r.output


def test_grade_math_hostile_rows_finish(app, tmp_path):
    rows = [
        {"id": "big", "response": "x" * 1_000_000 + r"\boxed{2}", "answer": "2"},
        {"id": "unbalanced", "response": r"\boxed{\frac{1}{2}", "answer": "1/2"},
        {"id": "tower", "response": r"\boxed{9^{9^{9^{9^{9}}}}}", "answer": "1"},
        {"id": "nested", "response": r"\boxed{" + r"\frac{1}{" * 40 + "2" + "}" * 40 + "}", "answer": "1"},
        {"id": "code", "response": r"\boxed{__import__('os').system('touch /tmp/w2s_pwned')}", "answer": "0"},
        {"id": "ok", "response": r"so \boxed{\dfrac{1}{2}}", "answer": "0.5"},
    ]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, rows)
    r = run(app, "grade", "--task", "math", "--input", inp, "--out", out, "--json")
    graded = {x["id"]: x["correct"] for x in read_jsonl(out)}
    assert graded == {"big": True, "unbalanced": False, "tower": False, "nested": False, "code": False, "ok": True}
    assert last_json(r)["n"] == 6


def test_select(app, tmp_path):
    weak, icl, qs, out = (tmp_path / n for n in ("w.jsonl", "i.jsonl", "q.jsonl", "sel"))
    write_jsonl(weak, [gen(1, "4"), gen(2, "5"), gen(3, "")])
    write_jsonl(icl, [gen(1, "4.0", "icl"), gen(2, "6", "icl"), gen(3, "1", "icl")])
    r = run(app, "select", "--task", "gsm8k", "--weak", weak, "--icl", icl, "--out", out, "--json")
    s = last_json(r)
    assert s["n_questions"] == 3 and s["n_selected"] == 1 and "precision" not in s
    assert [x["completion"] for x in read_jsonl(out / "hybrid.jsonl")] == [" w\n#### 4", " icl\n#### 4.0"]
    assert read_jsonl(out / "weak.jsonl")[0] == {"id": "1", "prompt": GSM.prompt("Q1?"), "completion": " w\n#### 4"}
    assert json.loads((out / "summary.json").read_text())["n_selected"] == 1
    # gold joined by id from a questions file
    write_jsonl(qs, [{"id": "2", "question": "Q2?", "answer": "x\n#### 6"}, {"id": "1", "question": "Q1?", "answer": "#### 5"},
                     {"id": "3", "question": "Q3?", "answer": "#### 1"}])
    r = run(app, "select", "--task", "gsm8k", "--weak", weak, "--icl", icl, "--out", out, "--questions", qs, "--json")
    assert last_json(r)["precision"] == 0.0 and "precision" in r.stdout


def test_select_needs_question_text(app, tmp_path):
    weak = tmp_path / "w.jsonl"
    write_jsonl(weak, [{"id": "1", "prompt": "free form", "response": "#### 1"}])
    r = run(app, "select", "--task", "gsm8k", "--weak", weak, "--icl", weak, "--out", tmp_path / "o", code=2)
    assert "--questions" in r.output


def test_pairs(app, tmp_path):
    weak, samples, out = tmp_path / "w.jsonl", tmp_path / "s.jsonl", tmp_path / "p.jsonl"
    write_jsonl(weak, [gen(1, "4", "weak", gold="4"), gen(2, "5", "weak", gold="3"), gen(3, "1", "weak", gold="1")])
    write_jsonl(samples, [gen(1, a, f"s{k}", k) for k, a in enumerate(["4"] * 8 + ["7", "7"])]
                + [gen(2, a, f"s{k}", k) for k, a in enumerate(["3"] * 9 + ["5"])]
                + [gen(3, a, f"s{k}", k) for k, a in enumerate(["1", "2", "3", "4"])])
    r = run(app, "pairs", "--task", "gsm8k", "--weak", weak, "--samples", samples, "--out", out, "--json")
    s = last_json(r)
    assert (s["n_questions"], s["n_pairs"], s["weak_chosen"], s["weak_rejected"]) == (3, 2, 1, 1)
    assert s["pair_accuracy"] == 1.0
    p = read_jsonl(out)
    assert p[0]["chosen"] == " weak\n#### 4" and p[1]["rejected"] == " weak\n#### 5"
    r = run(app, "pairs", "--task", "gsm8k", "--weak", weak, "--samples", samples, "--out", out,
            "--min-confidence", "0.25", "--flip-confidence", "0.95", "--max-pairs", "3", "--seed", "1", "--json")
    assert last_json(r)["weak_rejected"] == 0 and last_json(r)["n_pairs"] == 5  # 2 distinct "7" samples + 0 + 3


@pytest.mark.parametrize("fmt", ["trl", "llamafactory"])
def test_export(app, tmp_path, fmt):
    sft, pref = tmp_path / "sft.jsonl", tmp_path / "pref.jsonl"
    write_jsonl(sft, [{"id": "1", "prompt": "Question: a\nAnswer:", "completion": " b"}])
    write_jsonl(pref, [{"id": "1", "prompt": "P", "chosen": " c", "rejected": " r", "weak_side": "chosen"}])
    r = run(app, "export", "--format", fmt, "--input", sft, "--out", tmp_path / "sft_out.json", "--json")
    rows = json.loads((tmp_path / "sft_out.json").read_text())
    assert last_json(r)["kind"] == "sft"
    if fmt == "trl":
        assert rows == [{"id": "1", "prompt": "Question: a\nAnswer:", "completion": " b"}]
    else:
        assert rows == [{"instruction": "Question: a\nAnswer:", "input": "", "output": " b"}]
        assert last_json(r)["dataset_info"]["sft_out"]["columns"]["response"] == "output"
    r = run(app, "export", "--format", fmt, "--input", pref, "--out", tmp_path / "pref_out.jsonl", "--json")
    rows = read_jsonl(tmp_path / "pref_out.jsonl")
    assert last_json(r)["kind"] == "preference"
    assert rows[0]["chosen"] == " c" and rows[0]["rejected"] == " r"
    if fmt == "llamafactory":
        assert rows[0]["instruction"] == "P" and last_json(r)["dataset_info"]["pref_out"]["ranking"] is True


def test_export_rejects_bad_input(app, tmp_path):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": "1", "prompt": "P", "chosen": " c"}])
    r = run(app, "export", "--format", "trl", "--input", bad, "--out", tmp_path / "o.jsonl", code=2)
    assert "row 1" in r.output and "rejected" in r.output
    r = run(app, "export", "--format", "axolotl", "--input", bad, "--out", tmp_path / "o.jsonl", code=2)
    assert "llamafactory or trl" in r.output


def test_select_refuses_questions_that_do_not_join(app, tmp_path):
    """--questions whose ids match no generation used to be ignored silently."""
    weak, qs = tmp_path / "w.jsonl", tmp_path / "q.jsonl"
    write_jsonl(weak, [gen(1, "4"), gen(2, "5")])
    write_jsonl(qs, [{"id": "gsm8k_1", "question": "Q1?", "answer": "#### 4"}])
    r = run(app, "select", "--task", "gsm8k", "--weak", weak, "--icl", weak, "--out", tmp_path / "o",
            "--questions", qs, code=2)
    assert "q.jsonl" in r.output and "'1'" in r.output and "2 of the 2" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["select", "pairs"])
def test_non_string_response_is_named(app, tmp_path, command):
    weak = tmp_path / "w.jsonl"
    write_jsonl(weak, [gen(1, "4"), {**gen(2, "5"), "response": 5}])
    other = "--icl" if command == "select" else "--samples"
    r = run(app, command, "--task", "gsm8k", "--weak", weak, other, weak, "--out", tmp_path / "o", code=2)
    assert "w.jsonl, row 2, field 'response'" in r.output and "Traceback" not in r.output


def test_pairs_writes_the_pipelines_summary_beside_the_pairs(app, tmp_path):
    weak, samples, out = tmp_path / "w.jsonl", tmp_path / "s.jsonl", tmp_path / "pairs.jsonl"
    write_jsonl(weak, [gen(1, "4", "weak")])
    write_jsonl(samples, [gen(1, a, f"s{k}", k) for k, a in enumerate(["4"] * 3 + ["7"])])
    s = last_json(run(app, "pairs", "--task", "gsm8k", "--weak", weak, "--samples", samples, "--out", out, "--json"))
    on_disk = json.loads((tmp_path / "pairs_summary.json").read_text())
    assert on_disk == s and on_disk["confidences"] == [0.75] and on_disk["n_pairs"] == 1


def test_grade_names_the_rows_whose_verdict_was_bounded(app, tmp_path, monkeypatch):
    """Past the per-file grading budget, hard rows fall back to strict strings: the output marks
    them and the summary lists their row numbers."""
    from w2s import grading

    grading.clear_cache()
    monkeypatch.setattr(grading.budget, "SLOW_COMPARISON", 0.2)
    rows = [{"id": "ok", "response": r"\boxed{\dfrac{1}{2}}", "answer": r"\frac{1}{2}"}] + \
        [{"id": f"h{k}", "response": r"\boxed{%d^{123456789}}" % k, "answer": str(k)} for k in range(7, 12)]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, rows)
    r = run(app, "grade", "--task", "math", "-o", "timeout=0.5", "-o", "budget=0.6", "--input", inp, "--out", out,
            "--json")
    graded = read_jsonl(out)
    assert [x["correct"] for x in graded] == [True] + [False] * 5
    assert [x.get("grading_bounded", False) for x in graded] == [False] + [True] * 5
    s = last_json(r)
    assert s["bounded_rows"] == [2, 3, 4, 5, 6] and s["grading"]["slow"] + s["grading"]["skipped"] == 5
    assert "5 rows hit the grading bound" in r.stdout


@pytest.mark.parametrize("command", [
    ["grade", "--task", "gsm8k", "--input", "{e}", "--out", "{o}/g.jsonl"],
    ["select", "--task", "gsm8k", "--weak", "{e}", "--icl", "{e}", "--out", "{o}/s"],
    ["pairs", "--task", "gsm8k", "--weak", "{e}", "--samples", "{e}", "--out", "{o}/p.jsonl"],
    ["export", "--format", "trl", "--input", "{e}", "--out", "{o}/x.jsonl"]])
def test_empty_input_is_refused_and_nothing_written(app, tmp_path, command):
    empty, out = tmp_path / "e.jsonl", tmp_path / "out"
    empty.write_text("")
    out.mkdir()
    r = run(app, *[a.format(e=empty, o=out) for a in command], code=2)
    assert "e.jsonl: has no records" in r.output and not any(out.iterdir())
