"""Check: the `hf` backend's decode gives exactly the tokens of a reference version of w2s
(default: the `main` branch), greedy and seeded samples; and time both, interleaved.

The prompts are toy questions, half zero-shot and half 4-shot (demonstrations: gold solutions
of other questions, ~350 tokens), on the shipped strong toy model, float32 on CPU. Each side
runs in its own process: the reference from `git archive <ref> src` (PYTHONPATH), the new
one from this checkout, each with its own default backend options (or --ref-options /
--new-options). Both generate through `w2s.generation.generate` (the pipeline's per-sample
seeds) and record every row's token ids. Compared per record: token ids, response text,
finish_reason, n_tokens.

    python bench/decode_identity.py --prompts 1000 --k 10            # the identity check
    python bench/decode_identity.py --prompts 200 --repeats 3        # A/B timing, medians

Timings: tokens/s of the timed generate calls (model loaded and warmed up first), per side
and repeat, the two sides interleaved (ref, new, ref, new, ...) so that load from other work
on a shared machine hits both alike. Writes bench/results/decode_identity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_prompts(n: int, shots: int, seed: int = 0) -> list[dict]:
    """n toy test prompts: the first half zero-shot, the second half `shots`-shot."""
    import random

    from w2s.tasks import get_task
    from w2s.toy.world import make_splits

    task = get_task("toy")
    splits = make_splits(seed=seed, sizes={"test": n, "train_1": 200, "train_2": 0})
    rng = random.Random(seed)
    out = []
    for i, q in enumerate(splits["test"]):
        if i < n // 2 or not shots:
            out.append({"id": q["id"] + "-0shot", "prompt": task.prompt(q["question"])})
        else:
            demos = [(d["question"], d["solution"]) for d in rng.sample(splits["train_1"], shots)]
            out.append({"id": q["id"] + f"-{shots}shot", "prompt": task.fewshot_prompt(demos, q["question"])})
    return out


def side_run(job: dict) -> dict:
    """In the child process: generate greedy and k samples, recording token ids and times."""
    import torch

    from w2s.generation import SamplingConfig, generate

    torch.set_num_threads(job["threads"])
    try:
        from w2s.generation import hf_decode as decoder
    except ImportError:  # the reference: the decode loop lived in hf.py
        from w2s.generation import hf as decoder
    real_result = decoder._result

    def with_ids(lm, tokens, finish, sampling):
        return {**real_result(lm, tokens, finish, sampling), "token_ids": list(tokens)}

    decoder._result = with_ids
    from w2s.generation import resumable
    real_record = resumable._record
    resumable._record = lambda raw, *a: {**real_record(raw, *a), "token_ids": raw["token_ids"]}
    stop = tuple(job["stop"])
    runs = {"greedy": SamplingConfig(max_new_tokens=job["max_new_tokens"], stop=stop),
            "sampled": SamplingConfig(max_new_tokens=job["max_new_tokens"], stop=stop, temperature=1.0,
                                      n=job["k"], seed=job["seed"])}
    opts = {"dtype": "float32", "device": "cpu", **job["options"]}
    generate(job["model"], job["prompts"][:2], runs["greedy"], progress=False, **opts)  # load + warm up
    out = {"w2s": __import__("w2s").__file__, "runs": {}}
    for name in job["runs"]:
        t = time.perf_counter()
        records = generate(job["model"], job["prompts"], runs[name], progress=False, **opts)
        seconds = time.perf_counter() - t
        tokens = sum(r["n_tokens"] for r in records)
        out["runs"][name] = {"seconds": seconds, "tokens": tokens, "tok_per_s": tokens / seconds,
                             "records": [{k: r[k] for k in ("id", "sample_index", "response", "finish_reason",
                                                          "n_tokens", "token_ids")} for r in records]}
    return out


def reference_src(ref: str) -> tuple[Path, str]:
    """`src` of git ref `ref` extracted to a temporary directory, and the commit."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    dest = Path(tempfile.gettempdir()) / f"w2s-ref-{commit[:12]}"
    if not (dest / "src" / "w2s").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src", commit


def run_side(src: Path, job: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps(job))
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(job["threads"])}
        subprocess.run([sys.executable, __file__, "--side-run", str(job_path), str(out_path)], env=env,
                       check=True, cwd=str(ROOT))
        return json.loads(out_path.read_text())


def compare(ref: list[dict], new: list[dict]) -> dict:
    """Per record: identical token ids / response text / finish reason and n_tokens."""
    assert [(r["id"], r["sample_index"]) for r in ref] == [(r["id"], r["sample_index"]) for r in new]
    same_ids = [a.get("token_ids") == b.get("token_ids") for a, b in zip(ref, new)]
    same_all = [a == b for a, b in zip(ref, new)]
    differ = [f"{a['id']}#{a['sample_index']}" for a, b in zip(ref, new) if a != b]
    return {"records": len(ref), "identical_token_ids": sum(same_ids), "identical_records": sum(same_all),
            "zero_shot_identical": sum(s for s, r in zip(same_all, ref) if r["id"].endswith("-0shot")),
            "zero_shot_records": sum(r["id"].endswith("-0shot") for r in ref),
            "first_differences": differ[:10]}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--side-run":
        Path(sys.argv[3]).write_text(json.dumps(side_run(json.loads(Path(sys.argv[2]).read_text()))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--shots", type=int, default=4, help="shots of the second half of the prompts (0: none)")
    ap.add_argument("--k", type=int, default=10, help="samples per prompt at T=1")
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ref", default="main", help="git ref of the reference version")
    ap.add_argument("--ref-options", type=json.loads, default={}, help="reference backend options (JSON)")
    ap.add_argument("--new-options", type=json.loads, default={}, help="new backend options (JSON)")
    ap.add_argument("--runs", default="greedy,sampled")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved timing repeats (outputs compared once)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_identity.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from w2s.tasks import get_task
    from w2s.toy import checkpoint_path

    ref_src, commit = reference_src(args.ref)
    new_src = Path(tempfile.mkdtemp(prefix="w2s-new-")) / "src"  # a snapshot: edits during the run do not leak in
    shutil.copytree(ROOT / "src", new_src, ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    job = {"model": str(checkpoint_path("strong")), "prompts": build_prompts(args.prompts, args.shots),
           "stop": list(get_task("toy").stop), "max_new_tokens": args.max_new_tokens, "k": args.k,
           "seed": args.seed, "threads": args.threads, "runs": args.runs.split(",")}
    times: dict = {side: {run: [] for run in job["runs"]} for side in ("ref", "new")}
    outputs = {}
    for _ in range(args.repeats):
        for side, src, options in (("ref", ref_src, args.ref_options), ("new", new_src, args.new_options)):
            res = run_side(src, {**job, "options": options})
            for run, r in res["runs"].items():
                times[side][run].append(round(r["tok_per_s"], 1))
                print(f"{side} {run}: {r['tokens']} tokens in {r['seconds']:.1f}s = {r['tok_per_s']:.0f} tok/s",
                      flush=True)
            outputs.setdefault(side, res)
    result = {"ref": args.ref, "ref_commit": commit, "prompts": args.prompts, "shots": args.shots, "k": args.k,
              "max_new_tokens": args.max_new_tokens, "threads": args.threads, "ref_options": args.ref_options,
              "new_options": args.new_options, "tok_per_s": times, "identity": {}, "median_speedup": {}}
    for run in job["runs"]:
        result["identity"][run] = compare(outputs["ref"]["runs"][run]["records"], outputs["new"]["runs"][run]["records"])
        result["median_speedup"][run] = round(statistics.median(times["new"][run]) /
                                              statistics.median(times["ref"][run]), 3)
        print(run, result["identity"][run], f"median speedup {result['median_speedup'][run]}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
