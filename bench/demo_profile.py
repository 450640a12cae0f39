"""Where the demo's time goes: run `w2s demo` (or read a finished run) and print, per stage, the
seconds it took, its planned arithmetic at this machine's matrix-product rate, and the ratio.

    python bench/demo_profile.py --stage3                 # the full demo with Stage III, timed
    python bench/demo_profile.py --quick                  # the quick demo
    python bench/demo_profile.py --from runs/demo         # a finished run, nothing rerun

The demo runs in a fresh directory (a temporary one unless --out), in its own process, timed by
the wall clock around it. Per stage: measured seconds (manifest.json), arithmetic seconds
(plan.json's FLOPs over the rate the run measured at its start: fp32 2048x512 @ 512x2048),
and measured / arithmetic. The toy models' own shapes (hidden 64 and 128) reach a lower rate
than that product: it is measured here too (`toy_shapes_flops_per_s`), so that "x arithmetic"
can be read against what the shapes allow. Run it on an idle machine. Writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def toy_shapes_rate(seconds: float = 1.0) -> float:
    """fp32 rate of the toy strong model's training products (512x128 @ 128x384)."""
    import torch

    a, b = torch.randn(512, 128), torch.randn(128, 384)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * 512 * 128 * 384 * reps / (time.perf_counter() - t0)


def kind(work: dict) -> str:
    if work.get("trained_tokens"):
        return "train"
    return "generate" if work.get("generated_tokens") else "other"


def profile(run_dir: Path) -> dict:
    from w2s.report.collect import arithmetic_timings, stage_timings

    seconds = stage_timings(run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    arith = arithmetic_timings(run_dir).get("arithmetic", {})
    rows = []
    for name, secs in seconds.items():
        a = arith.get(name, {}).get("arithmetic_seconds")
        rows.append({"stage": name, "kind": kind(plan["stages"].get(name, {})), "seconds": round(secs, 2),
                     "arithmetic_seconds": a, "x_arithmetic": round(secs / a, 2) if a else None})
    by_kind: dict[str, dict] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], {"seconds": 0.0, "arithmetic_seconds": 0.0})
        k["seconds"] += r["seconds"]
        k["arithmetic_seconds"] += r["arithmetic_seconds"] or 0.0
    return {"machine": plan.get("machine"), "stages": rows,
            "by_kind": {k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in by_kind.items()},
            "stage_seconds": round(sum(seconds.values()), 1),
            "arithmetic_seconds": round(sum(r["arithmetic_seconds"] or 0 for r in rows), 1)}


def print_table(p: dict) -> None:
    print(f"{'stage':<28} {'kind':<9} {'seconds':>8} {'arith s':>8} {'x arith':>8}")
    for r in p["stages"]:
        a, x = r["arithmetic_seconds"], r["x_arithmetic"]
        print(f"{r['stage']:<28} {r['kind']:<9} {r['seconds']:>8.1f} {'-' if a is None else f'{a:.1f}':>8} "
              f"{'-' if x is None else f'{x:.1f}':>8}")
    for k, v in p["by_kind"].items():
        print(f"{'(all ' + k + ')':<28} {'':<9} {v['seconds']:>8.1f} {v['arithmetic_seconds']:>8.1f}")
    print(f"stages {p['stage_seconds']:.0f} s, arithmetic {p['arithmetic_seconds']:.0f} s at "
          f"{p['machine']['flops_per_s'] / 1e9:.0f} GFLOP/s ({p['machine']['device']}); "
          f"toy shapes reach {p['toy_shapes_flops_per_s'] / 1e9:.0f} GFLOP/s")
    if p.get("wall_seconds") is not None:
        print(f"wall {p['wall_seconds']:.0f} s ({p['wall_seconds'] / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="run_dir", type=Path, help="a finished run to read (nothing is run)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--stage3", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="run directory (default: a fresh temporary one)")
    ap.add_argument("--json", type=Path, help="write the profile here")
    args = ap.parse_args()

    wall = None
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = args.out or Path(tempfile.mkdtemp(prefix="w2s_demo_profile_")) / "run"
        if run_dir.exists() and any(run_dir.iterdir()):
            sys.exit(f"{run_dir} is not empty: the profile needs a fresh run")
        cmd = [sys.executable, "-m", "w2s", "demo", "--out", str(run_dir), "--seed", str(args.seed), "--quiet"]
        cmd += ["--quick"] * args.quick + ["--stage3"] * args.stage3
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    p = profile(run_dir)
    p.update({"run_dir": str(run_dir), "wall_seconds": None if wall is None else round(wall, 1),
              "toy_shapes_flops_per_s": toy_shapes_rate()})
    print_table(p)
    if args.json:
        args.json.write_text(json.dumps(p, indent=1) + "\n")


if __name__ == "__main__":
    main()
