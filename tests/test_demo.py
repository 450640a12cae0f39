"""`w2s demo --quick`: the real pipeline end to end on the toy world with the shipped models."""

import json
import subprocess
import sys

EXPECTED = {"weak", "strong_fewshot", "full_weak", "gold_sft", "m_plus", "m_pro_dpo", "m_pro_orpo"} | {
    f"stage1_iter{i}_{v}" for i in (1, 2) for v in ("weak", "icl", "hybrid")}


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
    assert "Gold SFT (ceiling)" in proc.stdout      # the results table is printed
    # The demo is a run like any other: a second invocation reuses every stage.
    again = subprocess.run([sys.executable, "-m", "w2s", "demo", "--quick", "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0
    last = json.loads((out / "manifest.json").read_text())["invocations"][-1]
    assert last["ran"] == ["report"]
