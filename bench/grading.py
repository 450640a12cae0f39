"""Grading benchmarks and checks on the real data (numbers for issues 2 and 19).

    python bench/grading.py [--data ../shared/data] [--workdir /tmp/w2s_bench] [--only SECTION ...]
    python bench/grading.py --only snapshot --snapshot-out before.json      # on the old code
    python bench/grading.py --only snapshot --snapshot-out after.json --compare-with before.json

1. GSM8K: `w2s grade` on the real weak-model outputs vs the authors' recorded `result`
   flags: agreement rate and the categories of disagreement.
2. MATH500: grade every gold solution against its stated answer (`w2s grade --task math`),
   timed end to end; then the same 500 comparisons forced through math-verify (no string
   fast path), timed.
3. Hostile responses: a 1 MB response, unbalanced braces, power towers, nested fractions,
   code in the answer; every row must be graded within a few seconds.
4. extraction: seconds per `extract_answer` on adversarial responses of 10 KB, 100 KB, 1 MB
   (loops on \\boxed{, ####, digits, markers, ...) for every task; issue 19 asks < 1 s at 1 MB.
5. snapshot: every extraction on the real data (gsm8k splits, weak outputs, MATH500 solutions,
   the toy fixture), written as JSON and compared with an earlier snapshot row by row.
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

    from w2s.grading.worker import DEFAULT_TIMEOUT, worker_pool
    from w2s.tasks import get_task

    task = get_task("math")
    pairs = [(task.extract_answer(r["solution"]), r["answer"]) for r in rows]
    t = time.monotonic()
    pool = worker_pool()
    forced = pool.compare([(a, b) for a, b in pairs], DEFAULT_TIMEOUT)
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
    "boxed_loop": "\\boxed{" * 150_000,  # issue 19: what a weak model loops on (1 MB; was 100 s)
    "tower_unbraced_inner": r"\boxed{9^{9^9}}",
    "tower_in_parens": r"\boxed{9^(9^9)}",
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


def _loop(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


ADVERSARIAL = {
    "boxed_loop": lambda n: _loop("\\boxed{", n), "fbox_fullwidth": lambda n: _loop("\\fbox {\uff12", n),
    "frac_loop": lambda n: "\\boxed{" + _loop("\\frac{", n), "open_braces": lambda n: "\\boxed{" + _loop("{", n),
    "hashes": lambda n: _loop("####", n), "hash_lines": lambda n: _loop("#### \n", n),
    "digits": lambda n: _loop("1", n), "digits_commas": lambda n: _loop("1,", n),
    "answer_is": lambda n: _loop("The answer is ", n), "markers": lambda n: _loop("result = => ", n),
    "spaces": lambda n: "answer:" + _loop(" ", n) + "x", "arabic_bidi": lambda n: _loop("\u0662\u200f", n),
}


def extraction(sizes=(10_000, 100_000, 1_000_000)) -> None:
    from w2s.tasks import get_task

    tasks = {"gsm8k": get_task("gsm8k"), "math": get_task("math"), "toy": get_task("toy"),
             "toy_strict": get_task("toy", lenient=False), "custom": get_task("custom")}
    print("extraction: slowest shape per task, seconds per extract_answer")
    for n in sizes:
        worst = {}
        for shape, make in ADVERSARIAL.items():
            text = make(n)
            for name, task in tasks.items():
                t = time.monotonic()
                task.extract_answer(text)
                worst[name] = max(worst.get(name, (0.0, "")), (time.monotonic() - t, shape))
        print(f"  {n:>9,d} chars  " + "  ".join(f"{k}={v[0]:.3f} ({v[1]})" for k, v in worst.items()))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def snapshot(data: Path, toy_dir: Path) -> dict[str, list]:
    """{what: [extracted answer per row]} over the real data, for every task's parser."""
    from w2s.tasks import get_task

    gsm, math, custom = get_task("gsm8k"), get_task("math"), get_task("custom")
    toy, strict = get_task("toy"), get_task("toy", lenient=False)
    parsers = {"gsm8k": gsm.extract_answer, "math": math.extract_answer, "custom": custom.extract_answer,
               "toy": toy.extract_answer, "toy_strict": strict.extract_answer, "toy_completion": toy.completion}
    texts = {f"gsm8k/{split}": [r.get("solution") or r["answer"] for r in _rows(data / "gsm8k" / f"{split}.jsonl")]
             for split in ("test", "train_1", "train_2")}
    texts["weak_outputs"] = [r["response"] for r in _rows(data / "weak_outputs" / "gsm8k_train_2_mistral_7b.jsonl")]
    math_rows = _rows(data / "math" / "test.jsonl")
    texts["math/test"] = [r["solution"] for r in math_rows]
    for f in sorted(toy_dir.glob("*.jsonl")):
        rows = _rows(f)
        if rows and "response" in rows[0]:
            texts[f"toy/{f.stem}"] = [r["response"] for r in rows]
    snap = {f"{source}:{name}": [parse(t) for t in items]
            for source, items in texts.items() for name, parse in parsers.items()}
    snap["math/test:gold_from_solution"] = [math.gold_answer({"solution": r["solution"]}) for r in math_rows]
    for split in ("test", "train_1", "train_2"):
        rows = _rows(data / "gsm8k" / f"{split}.jsonl")
        snap[f"gsm8k/{split}:gold"] = [gsm.gold_answer(r) for r in rows]
        snap[f"gsm8k/{split}:gold_solution"] = [gsm.gold_solution(r) for r in rows]
    return snap


def compare(snap: dict, before_path: Path) -> None:
    before = json.loads(before_path.read_text())
    rows = diffs = 0
    for key in sorted(set(before) | set(snap)):
        old, new = before.get(key), snap.get(key)
        if old is None or new is None or len(old) != len(new):
            print(f"  {key}: only in one snapshot or a different row count")
            continue
        changed = [(i, a, b) for i, (a, b) in enumerate(zip(old, new)) if a != b]
        rows, diffs = rows + len(new), diffs + len(changed)
        for i, a, b in changed[:3]:
            print(f"  {key} row {i}: {a!r} -> {b!r}")
    print(f"snapshot: {rows} extractions compared with {before_path}: {diffs} differences")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--toy", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "toy_generations"))
    ap.add_argument("--workdir", default="/tmp/w2s_bench")
    ap.add_argument("--only", nargs="*", default=["gsm8k", "math500", "hostile", "extraction"],
                    choices=["gsm8k", "math500", "hostile", "extraction", "snapshot"])
    ap.add_argument("--snapshot-out", help="snapshot: write the extractions here (JSON)")
    ap.add_argument("--compare-with", help="snapshot: an earlier snapshot to compare with, row by row")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sections = {"gsm8k": lambda: gsm8k(data, work), "math500": lambda: math500(data, work),
                "hostile": lambda: hostile(work), "extraction": extraction}
    for name in args.only:
        if name in sections:
            sections[name]()
    if "snapshot" in args.only:
        snap = snapshot(data, Path(args.toy))
        print(f"snapshot: {sum(map(len, snap.values()))} extractions in {len(snap)} columns")
        if args.snapshot_out:
            Path(args.snapshot_out).write_text(json.dumps(snap))
        if args.compare_with:
            compare(snap, Path(args.compare_with))


if __name__ == "__main__":
    sys.exit(main())
