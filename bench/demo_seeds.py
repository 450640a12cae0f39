"""Summarise `w2s demo` runs over seeds: mean and spread per model, and the method's diagnostics.

    for s in 0 1 2; do w2s demo --out runs/demo_s$s --seed $s; done
    python bench/demo_seeds.py runs/demo_s0 runs/demo_s1 runs/demo_s2 [--json bench/results/demo_seeds.json]

Reads each run's metrics.json (the pipeline's schema) and manifest.json (wall time per stage).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROWS = [("weak", "weak (floor)"), ("strong_fewshot", "strong few-shot"), ("full_weak", "full weak FT"),
        ("m_plus", "M_plus (Stage I)"), ("m_pro_dpo", "M_pro DPO"), ("m_pro_orpo", "M_pro ORPO"),
        ("gold_sft", "gold SFT (ceiling)")]


def summarise(runs: list[Path]) -> dict:
    per_seed = []
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        stages = json.loads((run / "manifest.json").read_text())["stages"]
        acc = {k: 100 * m["models"][k]["accuracy"] for k, _ in ROWS if k in m["models"]}
        sel = [{"n_selected": it["n_selected"], "precision": it.get("precision"), "weak_accuracy": it["weak_accuracy"]}
               for it in m["selection"]["iterations"]]
        p = m["selection"]["pairs"]
        per_seed.append({"run": str(run), "accuracy": acc, "selection": sel,
                         "pairs": {k: p.get(k) for k in ("n_pairs", "chosen_accuracy", "rejected_accuracy")},
                         "stage_seconds": round(sum(s.get("seconds") or 0 for s in stages.values()), 1)})
    return {"seeds": per_seed}


def fmt(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.1f} ± {statistics.pstdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    s = summarise(a.runs)
    seeds = s["seeds"]
    print("| model | " + " | ".join(Path(x["run"]).name for x in seeds) + " | mean ± sd |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for key, label in ROWS:
        xs = [x["accuracy"][key] for x in seeds]
        print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in xs) + f" | {fmt(xs)} |")
    gap = {k: [x["accuracy"][k] for x in seeds] for k, _ in ROWS}
    pro = [max(d, o) for d, o in zip(gap["m_pro_dpo"], gap["m_pro_orpo"])]
    checks = {
        "M_plus - full weak": [p - f for p, f in zip(gap["m_plus"], gap["full_weak"])],
        "full weak - weak": [f - w for f, w in zip(gap["full_weak"], gap["weak"])],
        "best M_pro - M_plus": [b - p for b, p in zip(pro, gap["m_plus"])],
        "PGR(best M_pro)": [(b - w) / (c - w) for b, w, c in zip(pro, gap["weak"], gap["gold_sft"])],
    }
    for name, xs in checks.items():
        print(f"{name}: " + ", ".join(f"{v:.2f}" for v in xs) + f"  (mean {statistics.mean(xs):.2f})")
    for x in seeds:
        sel = "; ".join(f"iter{i + 1} {it['n_selected']} at {it['precision']:.3f}" for i, it in enumerate(x["selection"]))
        pr = x["pairs"]
        print(f"{Path(x['run']).name}: weak labels {x['selection'][0]['weak_accuracy']:.3f}; {sel}; "
              f"{pr['n_pairs']} pairs, chosen {pr['chosen_accuracy']:.3f} vs rejected {pr['rejected_accuracy']:.3f}; "
              f"stages {x['stage_seconds']} s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({**s, "checks": checks}, indent=1))


if __name__ == "__main__":
    main()
