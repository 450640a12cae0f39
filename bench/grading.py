"""Grading benchmarks and checks on the real data (numbers for issue 2's report).

    python bench/grading.py [--data ../shared/data] [--workdir /tmp/w2s_bench]

1. GSM8K: `w2s grade` on the real weak-model outputs vs the authors' recorded `result`
   flags: agreement rate and the categories of disagreement.
2. MATH500: grade every gold solution against its stated answer (`w2s grade --task math`),
   timed end to end; then the same 500 comparisons forced through math-verify (no string
   fast path), timed.
3. Hostile responses: a 1 MB response, unbalanced braces, power towers, nested fractions,
   code in the answer; every row must be graded within a few seconds.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path


def sh(args: list[str]) -> tuple[dict, float]:
    print("$", " ".join(args))
    t = time.monotonic()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    elapsed = time.monotonic() - t
    print(out.strip().splitlines()[0], f"[{elapsed:.2f} s]")
    return json.loads(out.strip().splitlines()[-1]), elapsed


def category(pred: str, gold: str, recorded: bool, ours: bool) -> str:
    try:
        same_value = float(pred.replace(",", "")) == float(gold.replace(",", ""))
    except ValueError:
        same_value = False
    if ours and not recorded and same_value and pred != gold:
        return "trailing-zero decimal (e.g. 4.20 vs 4.2): ours right"
    return f"other (pred={pred!r}, gold={gold!r}, recorded={recorded}, ours={ours})"


def gsm8k(data: Path, work: Path) -> None:
    src = data / "weak_outputs" / "gsm8k_train_2_mistral_7b.jsonl"
    out = work / "gsm8k_graded.jsonl"
    summary, _ = sh(["w2s", "grade", "--task", "gsm8k", "--input", str(src), "--out", str(out),
                     "--gold-field", "gold", "--json"])
    graded = [json.loads(line) for line in out.open()]
    cats = collections.Counter(category(r["pred"], r["gold"], r["result"], r["correct"])
                               for r in graded if r["correct"] != r["result"])
    n_dis = sum(cats.values())
    print(f"GSM8K: {summary['n']} rows, accuracy {summary['accuracy']:.4f}; agreement with recorded "
          f"results {(len(graded) - n_dis) / len(graded):.4%} ({n_dis} disagreements)")
    for c, k in cats.most_common():
        print(f"  {k:4d}  {c}")


def math500(data: Path, work: Path) -> None:
    rows = [json.loads(line) for line in (data / "math" / "test.jsonl").open()]
    inp = work / "math_gold.jsonl"
    with inp.open("w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": str(i), "response": r["solution"], "answer": r["answer"]}) + "\n")
    summary, elapsed = sh(["w2s", "grade", "--task", "math", "--input", str(inp),
                           "--out", str(work / "math_graded.jsonl"), "--json"])
    print(f"MATH500 gold solutions vs answers: {summary['correct']}/{summary['n']} in {elapsed:.2f} s "
          "(whole CLI run, process start included)")

    from w2s import grading
    from w2s.tasks import get_task

    task = get_task("math")
    pairs = [(task.extract_answer(r["solution"]), r["answer"]) for r in rows]
    t = time.monotonic()
    pool = grading._worker_pool()
    forced = pool.compare([(a, b) for a, b in pairs], grading.DEFAULT_TIMEOUT)
    print(f"  same 500 pairs forced through math-verify (worker start included): "
          f"{sum(forced)}/500 in {time.monotonic() - t:.2f} s; worker restarts: {pool.restarts}")
    for (a, b), ok in zip(pairs, forced):
        if not ok:
            print(f"    math-verify alone says different: {a!r} vs {b!r}")


HOSTILE = {
    "one_megabyte": "x" * 1_000_000 + r" so \boxed{2}",
    "unbalanced": r"so \boxed{\frac{1}{2}",
    "power_tower": r"\boxed{9^{9^{9^{9^{9}}}}}",
    "tower_two_levels": r"\boxed{9^{9^{9}}}",
    "tower_no_braces": r"\boxed{9^9^9^9}",
    "nested_fractions": r"\boxed{" + r"\frac{1}{" * 60 + "2" + "}" * 60 + "}",
    "python_code": r"\boxed{__import__('os').system('touch /tmp/w2s_pwned')}",
    "python_code_plain": "The answer is: (lambda: __import__('os').system('touch /tmp/w2s_pwned'))()",
    "huge_factorial": r"\boxed{(10^{6})!}",
    "deep_braces": r"\boxed{" + "{" * 200 + "1" + "}" * 200 + "}",
    "normal": r"so \boxed{\dfrac{1}{2}}",
}


def hostile(work: Path) -> None:
    inp, out = work / "hostile.jsonl", work / "hostile_graded.jsonl"
    with inp.open("w") as f:
        for k, resp in HOSTILE.items():
            f.write(json.dumps({"id": k, "response": resp, "answer": "0.5" if k == "normal" else "2"}) + "\n")
    summary, elapsed = sh(["w2s", "grade", "--task", "math", "--input", str(inp), "--out", str(out), "--json"])
    for r in map(json.loads, out.open()):
        print(f"  {r['id']:18s} pred={r['pred'][:40]!r:44s} correct={r['correct']}")
    print(f"hostile rows: {summary['n']} graded in {elapsed:.2f} s; /tmp/w2s_pwned exists: "
          f"{Path('/tmp/w2s_pwned').exists()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--workdir", default="/tmp/w2s_bench")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    gsm8k(data, work)
    math500(data, work)
    hostile(work)


if __name__ == "__main__":
    sys.exit(main())
