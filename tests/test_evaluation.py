"""w2s.evaluation: greedy accuracy, pass@k, maj@k from recorded generations (exact numbers)
and from a tiny HF model (runs end to end), plus the `w2s eval` command."""

from __future__ import annotations

import json

import pytest

from w2s.io import write_jsonl


@pytest.fixture()
def recorded(tmp_path):
    questions = tmp_path / "test.jsonl"
    write_jsonl(questions, [{"id": "q1", "question": "What is 9 times 2?", "answer": "18"},
                            {"id": "q2", "question": "What is 1 plus 2?", "answer": "3"},
                            {"id": "q3", "question": "What is 2 plus 2?", "answer": "4"}])
    responses = {"q1": [" 9 * 2 = 18\n#### 18", " #### 18", " #### 5"],
                 "q2": [" #### 4", " #### 3", " #### 4"],
                 "q3": [" I do not know", " #### 5", " #### 6"]}
    gens = tmp_path / "gens.jsonl"
    write_jsonl(gens, [{"id": qid, "sample_index": i, "response": r, "finish_reason": "stop"}
                       for qid, rs in responses.items() for i, r in enumerate(rs)])
    return questions, gens


def test_metrics_from_recorded_generations(recorded, tmp_path):
    from w2s.evaluation import evaluate

    questions, gens = recorded
    m = evaluate("gsm8k", str(gens), questions, n=3, backend="replay", out_path=tmp_path / "out" / "m.json")
    assert m["n_questions"] == 3
    assert m["accuracy"] == pytest.approx(1 / 3)      # greedy = sample 0: only q1 right
    assert m["pass@3"] == pytest.approx(2 / 3)        # q1 and q2 have a right sample
    assert m["maj@3"] == pytest.approx(1 / 3)         # q1 majority 18 right; q2 majority 4 wrong
    assert m["k"] == 3 and m["pass@k"] == m["pass@3"]
    on_disk = json.loads((tmp_path / "out" / "m.json").read_text())
    assert on_disk["accuracy"] == m["accuracy"]
    assert (tmp_path / "out" / "m.greedy.jsonl").exists() and (tmp_path / "out" / "m.samples.jsonl").exists()

    greedy_only = evaluate("gsm8k", str(gens), questions, n=0, backend="replay", limit=2)
    assert greedy_only["n_questions"] == 2 and "pass@k" not in greedy_only


def test_eval_cli(recorded, tmp_path):
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    questions, gens = recorded
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["eval", "--task", "gsm8k", "--model", str(gens), "--data", str(questions),
                                   "--n", "3", "--backend", "replay", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["maj@3"] == pytest.approx(1 / 3) and json.loads(out.read_text())["pass@3"] == pytest.approx(2 / 3)


def test_evaluate_tiny_hf_model(tiny_model, tmp_path, shared_data):
    pytest.importorskip("torch")
    from w2s.evaluation import evaluate

    m = evaluate("gsm8k", tiny_model, shared_data / "gsm8k" / "test.jsonl", n=2, limit=2, max_new_tokens=8,
                 out_path=tmp_path / "tiny.json")
    assert m["n_questions"] == 2 and 0.0 <= m["accuracy"] <= 1.0
    assert {"pass@2", "maj@2"} <= set(m) and m["truncated_greedy"] <= 2


def test_eval_cache_is_keyed_by_settings_and_model(recorded, tmp_path, caplog):
    """A rerun with other settings, or of a model rewritten at the same path, regenerates: the
    metrics file never describes generations made with other settings."""
    import os

    from w2s.evaluation import evaluate

    questions, gens = recorded
    out = tmp_path / "out" / "m.json"
    first = evaluate("gsm8k", str(gens), questions, n=3, backend="replay", out_path=out)
    assert first["accuracy"] == pytest.approx(1 / 3)
    key_file = tmp_path / "out" / "m.generations.json"
    keys = json.loads(key_file.read_text())

    # the same settings reuse the cache (keys unchanged, same numbers)
    assert evaluate("gsm8k", str(gens), questions, n=3, backend="replay", out_path=out)["accuracy"] == first["accuracy"]
    assert json.loads(key_file.read_text()) == keys

    # other sampling settings: both caches are regenerated (the greedy one too, max_new_tokens shapes it)
    caplog.set_level("WARNING", logger="w2s.evaluation")
    evaluate("gsm8k", str(gens), questions, n=3, temperature=0.5, max_new_tokens=64, backend="replay", out_path=out)
    assert sum("regenerating" in r.message for r in caplog.records) == 2
    assert json.loads(key_file.read_text()) != keys

    # the "model" rewritten in place (a retrain at the same path): new answers are scored, not the cached ones
    write_jsonl(gens, [{"id": q, "sample_index": i, "response": f" #### {a}", "finish_reason": "stop"}
                       for q, a in (("q1", 18), ("q2", 3), ("q3", 4)) for i in range(3)])
    os.utime(gens, ns=(1, 1))  # a different stamp even within the file system's time resolution
    again = evaluate("gsm8k", str(gens), questions, n=3, temperature=0.5, max_new_tokens=64, backend="replay",
                     out_path=out)
    assert again["accuracy"] == 1.0 and again["maj@3"] == 1.0


def test_scored_files_named_with_a_dot_keep_caches_of_their_own(recorded, tmp_path):
    """`--out runs/m_t0.5` and `--out runs/m_t0.7` (no `.json`): each run's generations are cached
    under its whole name, so the second does not regenerate over the first's."""
    from w2s.evaluation import evaluate

    questions, gens = recorded
    for name in ("m_t0.5", "m_t0.7", "m.json"):
        evaluate("gsm8k", str(gens), questions, n=3, backend="replay", out_path=tmp_path / name)
    assert sorted(p.name for p in tmp_path.glob("*.samples.jsonl")) == ["m.samples.jsonl", "m_t0.5.samples.jsonl",
                                                                       "m_t0.7.samples.jsonl"]
    assert (tmp_path / "m_t0.5").is_file() and (tmp_path / "m.json").is_file()


def test_greedy_answers_are_reused_from_another_eval_made_with_the_same_settings(recorded, tmp_path):
    """The temperature sweep's evals take M_plus's dev greedy answers instead of decoding them again,
    only when they were made with the same settings (model, prompts, decoding)."""
    from w2s.evaluation import evaluate
    from w2s.io import read_jsonl

    questions, gens = recorded
    dev = tmp_path / "eval_dev" / "m.json"
    assert evaluate("gsm8k", str(gens), questions, n=0, backend="replay", out_path=dev)["accuracy"] == pytest.approx(1 / 3)
    greedy = read_jsonl(dev.with_suffix(".greedy.jsonl"))
    for record in greedy:   # mark the file: answers read from it, not decoded, score q3 right
        if record["id"] == "q3":
            record["response"] = " #### 4"
    write_jsonl(dev.with_suffix(".greedy.jsonl"), greedy)

    swept = tmp_path / "eval_dev" / "temperatures" / "m.t0.7.json"
    m = evaluate("gsm8k", str(gens), questions, n=3, temperature=0.7, backend="replay", out_path=swept,
                 greedy_from=dev)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["k"] == 3
    assert read_jsonl(swept.with_suffix(".greedy.jsonl")) == greedy

    other = tmp_path / "other" / "m.json"   # other decoding settings: decoded afresh
    m = evaluate("gsm8k", str(gens), questions, n=3, max_new_tokens=64, backend="replay", out_path=other,
                 greedy_from=dev)
    assert m["accuracy"] == pytest.approx(1 / 3)
