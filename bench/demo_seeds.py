"""The 3-seed table of issue 13 / 12 from finished `w2s demo` runs: every model's strict and
lenient test accuracy with its 95% CI, pass@k / maj@k (k in the header), the paired comparisons
the pipeline computed, and each target checked per seed under both scorings.

    for s in 0 101 102; do w2s demo --stage3 --out runs/demo_s$s --seed $s; done
    python bench/demo_seeds.py runs/demo_s0 runs/demo_s101 runs/demo_s102 [--json OUT.json]

Reads only each run's metrics.json and manifest.json (the pipeline's files); prints Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = [("weak", "weak (floor)"), ("strong_fewshot", "strong few-shot"), ("full_weak", "full weak FT"),
        ("m_plus", "M_plus (Stage I)"), ("m_pro_dpo", "M_pro DPO"), ("m_pro_orpo", "M_pro ORPO"),
        ("m_rl", "m_rl (Stage III)"), ("gold_sft", "gold SFT (ceiling)")]


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def targets(m: dict, key: str) -> dict:
    """Issue 13's and 12's targets under one scoring (`accuracy` or `accuracy_lenient`), in points."""
    acc = {n: (v.get(key) if v.get(key) is not None else v.get("accuracy")) for n, v in m["models"].items()}
    pro = [acc[n] for n in ("m_pro_dpo", "m_pro_orpo") if acc.get(n) is not None]
    out = {}
    if pro and acc.get("m_plus") is not None:
        best = max(pro)
        out["best M_pro - M_plus (>= +2)"] = 100 * (best - acc["m_plus"])
        if acc.get("strong_fewshot") is not None:
            out["best M_pro - strong few-shot (>= +3)"] = 100 * (best - acc["strong_fewshot"])
        if acc.get("gold_sft") is not None and acc["gold_sft"] != acc["weak"]:
            out["PGR of best M_pro (>= 0.7)"] = (best - acc["weak"]) / (acc["gold_sft"] - acc["weak"])
        if acc.get("m_rl") is not None:
            out["m_rl - M_plus (>= +5)"] = 100 * (acc["m_rl"] - acc["m_plus"])
            out["m_rl - best M_pro (>= +2)"] = 100 * (acc["m_rl"] - best)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    runs = {}
    for run in a.runs:
        m = json.loads((run / "metrics.json").read_text())
        stages = json.loads((run / "manifest.json").read_text())["stages"]
        runs[run.name] = {"metrics": m, "stage_seconds": round(sum(s.get("seconds") or 0 for s in stages.values()), 1)}
    ks = {v.get("k") for r in runs.values() for v in r["metrics"]["models"].values() if v.get("k")}
    k = ks.pop() if len(ks) == 1 else "k"
    print(f"| model | " + " | ".join(f"{n}: strict [95% CI] / lenient / pass@{k} / maj@{k} / dev" for n in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for key, label in ROWS:
        cells = []
        for r in runs.values():
            v = r["metrics"]["models"].get(key)
            if v is None:
                cells.append("–")
                continue
            ci = v.get("ci95")
            cells.append(f"{pct(v['accuracy'])} [{pct(ci[0]) if ci else '–'}, {pct(ci[1]) if ci else '–'}] / "
                         f"{pct(v.get('accuracy_lenient'))} / {pct(v.get('pass@k'))} / {pct(v.get('maj@k'))} / "
                         f"{pct(v.get('dev_accuracy'))}")
        if any(c != "–" for c in cells):
            print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nPaired comparisons (strict, same test questions; McNemar p):")
    for name, r in runs.items():
        for c in r["metrics"].get("comparisons", []):
            lo, hi = c["ci95"]
            print(f"- {name}: {c['a']} vs {c['b']}: {100 * c['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], "
                  f"p = {c['p']:.3g}")
    print("\nThe same against strong few-shot under the lenient parse (the base model states `=> N`):")
    for name, r in runs.items():
        for c in r["metrics"].get("comparisons_lenient", []):
            if c["b"] == "strong_fewshot":
                lo, hi = c["ci95"]
                print(f"- {name}: {c['a']} vs strong_fewshot: {100 * c['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], "
                      f"p = {c['p']:.3g}")
    print("\nTargets (points; PGR as a ratio):")
    checks = {}
    for name, r in runs.items():
        checks[name] = {"strict": targets(r["metrics"], "accuracy"), "lenient": targets(r["metrics"], "accuracy_lenient")}
        for scoring, t in checks[name].items():
            print(f"- {name} {scoring}: " + "; ".join(f"{k} {v:+.2f}" if "PGR" not in k else f"{k} {v:.2f}"
                                                      for k, v in t.items()))
    for name, r in runs.items():
        print(f"- {name}: compute time of the stages {r['stage_seconds']} s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"checks": checks, "runs": {n: r["metrics"] for n, r in runs.items()}}, indent=1))


if __name__ == "__main__":
    main()
