"""`w2s demo --quick`: the real pipeline end to end on the toy world with the shipped models."""

import json
import subprocess
import sys

import pytest

EXPECTED = {"weak", "strong_fewshot", "full_weak", "gold_sft", "m_plus", "m_pro_dpo", "m_pro_orpo"} | {
    f"stage1_iter{i}_{v}" for i in (1, 2) for v in ("weak", "icl", "hybrid")}


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "w2s", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == EXPECTED
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in metrics["models"].values())
    # Hidden gold exists in the toy world, so the diagnostics are always there.
    for it in metrics["selection"]["iterations"]:
        assert 0 <= it["n_selected"] <= it["n_questions"] == 200 and 0.0 <= it["weak_accuracy"] <= 1.0
        assert ("precision" in it) == (it["n_selected"] > 0)
    assert metrics["selection"]["pairs"]["n_questions"] == 200
    assert (out / "report.html").exists() and (out / "toy_data" / "test.jsonl").exists()
    # M_plus on dev at each swept temperature: its greedy is M_plus's dev greedy, its samples are drawn at
    # that temperature, and metrics.json's row is the file's numbers
    sweep = metrics["temperature_sweep"]
    assert [r["temperature"] for r in sweep["rows"]] == [0.3, 0.5, 0.7, 1.0] and sweep["split"] == "dev"
    for r in sweep["rows"]:
        f = json.loads((out / "eval_dev" / "temperatures" / f"{sweep['eval_name']}.t{r['temperature']:g}.json").read_text())
        assert f["temperature"] == r["temperature"] and f["n_questions"] == 100 and f["samples_per_question"] == 2
        assert r["greedy"] == metrics["models"]["m_plus"]["dev_accuracy"]
        greedy = out / "eval_dev" / "temperatures" / f"{sweep['eval_name']}.t{r['temperature']:g}.greedy.jsonl"
        assert greedy.read_bytes() == (out / "eval_dev" / f"{sweep['eval_name']}.greedy.jsonl").read_bytes()
        assert r["maj_minus_greedy"] == f["maj@k"] - f["accuracy"] and r["avg@k"] == f["avg@k"]
        assert sum(f["correct_maj"].values()) == round(f["maj@k"] * 100)       # the vote's per-question verdicts
        lo, hi = r["maj_minus_greedy_ci95"]
        assert lo - 1e-9 <= r["maj_minus_greedy"] <= hi + 1e-9 and 0 <= r["maj_minus_greedy_p"] <= 1
    assert "Self-consistency on dev" in (out / "report.md").read_text()
    assert "Gold SFT (ceiling)" in proc.stdout      # the results table is printed
    # The demo is a run like any other: a second invocation reuses every stage.
    again = subprocess.run([sys.executable, "-m", "w2s", "demo", "--quick", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0
    last = json.loads((out / "manifest.json").read_text())["invocations"][-1]
    assert last["ran"] == ["report"]
