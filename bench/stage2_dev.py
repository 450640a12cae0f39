"""Stage II on the dev split: which pairs and which loss make M_pro beat M_plus? (issue 13)

Takes a finished tuning run (`w2s demo --dev-only`: every model scored on dev, never on test)
and, for each variant below, builds pairs from the run's files with `steps.preference_pairs`,
trains from the variant's start model with `steps.train` and scores it greedily on the dev split
with `steps.evaluate` (the pipeline's own functions). Gold of train_2 is used for pair
diagnostics only; settings are compared on dev only.

    python bench/stage2_dev.py RUN OUT [--only NAME ...]   # RUN: a --dev-only demo run directory

Writes OUT/results.json and prints a table: dev accuracy with 95% CI and the paired difference
to the variant's start model on the same dev questions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from w2s import steps
from w2s.io import read_records, write_json, write_jsonl
from w2s.method.metrics import bootstrap_ci, paired_comparison

BASE_TRAIN = {"learning_rate": 1.0e-5, "max_steps": 60, "batch_size": 16, "beta": 0.1, "sft_weight": 1.0,
              "max_length": 256, "save_steps": 1000, "method": "dpo"}
BASE_PAIRS = {"strategy": "paper", "min_confidence": 0.6, "flip_confidence": 0.8, "max_pairs": 1,
              "min_support": 3, "prefer": "icl"}

#: name -> (start model stage, samples file, pair settings, train settings)
VARIANTS = {
    "paper": ("sft_iter2_hybrid", "data/samples.jsonl", {}, {}),
    "paper_orpo": ("sft_iter2_hybrid", "data/samples.jsonl", {}, {"method": "orpo"}),
    # the icl Stage I model (the dev split's best Stage I model) as M_plus and as the sampler
    # (its samples are generated into OUT)
    "icl_paper": ("sft_iter2_icl", "gen:sft_iter2_icl", {}, {}),
    "agreement": ("sft_iter2_hybrid", "data/samples.jsonl", {"strategy": "agreement"}, {}),
    "icl_weak_rejected": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "weak_rejected_only"}, {}),
    "icl_agreement_lr3e-5": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "agreement"}, {"learning_rate": 3.0e-5}),
    "icl_agreement_nonll": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "agreement"}, {"sft_weight": 0.0}),
    "icl_agreement_beta0.5": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "agreement"}, {"beta": 0.5}),
    "icl_agreement_pairs3": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "agreement", "max_pairs": 3}, {}),
    "icl_self": ("sft_iter2_icl", "gen:sft_iter2_icl", {"strategy": "self"}, {}),
    "paper_lr1e-4": ("sft_iter2_hybrid", "data/samples.jsonl", {}, {"learning_rate": 1.0e-4}),
    "agreement_lr1e-4": ("sft_iter2_hybrid", "data/samples.jsonl", {"strategy": "agreement"}, {"learning_rate": 1.0e-4}),
}


def dev_score(task, model: str, dev: list[dict], out: Path, seed: int) -> dict:
    m = steps.evaluate(task, model, dev, n=0, max_new_tokens=80, seed=seed, out_path=out, batch_size=512)
    return {"accuracy": m["accuracy"], "ci95": bootstrap_ci(list(m["correct"].values())), "correct": m["correct"]}


def sample_file(run: Path, out: Path, spec: str, task, unlabeled: list[dict], seed: int) -> Path:
    """The run's samples file, or for "gen:STAGE" 10 samples at T = 1 from models/STAGE (made once)."""
    if not spec.startswith("gen:"):
        return run / spec
    from w2s.generation import SamplingConfig

    stage = spec[4:]
    path = out / f"samples_{stage}.jsonl"
    if not path.exists():
        sampling = SamplingConfig(max_new_tokens=80, temperature=1.0, n=10, stop=tuple(task.stop), seed=seed)
        steps.generate_file(str(run / "models" / stage), steps.zero_shot_prompts(task, unlabeled), sampling, path,
                            partial=out / f".samples_{stage}.partial.jsonl", batch_size=512)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = ap.parse_args()
    run, out = args.run, args.out
    out.mkdir(parents=True, exist_ok=True)
    task = steps.make_task("toy")
    seed = json.loads((run / "toy_data" / "world.json").read_text())["seed"]
    q = lambda name: read_records(run / "data" / "questions" / f"{name}.jsonl")  # noqa: E731
    unlabeled, hidden, dev = q("unlabeled"), q("hidden_gold"), q("dev")
    weak = read_records(run / "data" / "d_weak.jsonl")
    icl = read_records(run / "data" / "d_icl.jsonl")
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    starts: dict[str, dict] = {}
    for name, (start, samples_file, pair_over, train_over) in VARIANTS.items():
        if args.only and name not in args.only or name in results:
            continue
        t0 = time.time()
        start_model = str(run / "models" / start)
        if start not in starts:
            starts[start] = dev_score(task, start_model, dev, out / f"start_{start}.json", seed)
        p = {**BASE_PAIRS, **pair_over}
        samples = read_records(sample_file(run, out, samples_file, task, unlabeled, seed))
        context = ({"icl_gens": icl, "min_support": p["min_support"], "prefer": p["prefer"]}
                   if p["strategy"] == "agreement" else {})
        pairs, summary = steps.preference_pairs(task, unlabeled, weak, samples, min_confidence=p["min_confidence"],
                                                flip_confidence=p["flip_confidence"], max_pairs=p["max_pairs"],
                                                seed=seed, gold=hidden, strategy=p["strategy"], **context)
        vdir = out / name
        write_jsonl(vdir / "pairs.jsonl", pairs)
        settings = {"seed": seed, **BASE_TRAIN, **train_over}
        steps.train("preference", start_model, vdir / "pairs.jsonl", vdir / "model", settings)
        score = dev_score(task, str(vdir / "model"), dev, vdir / "dev.json", seed)
        cmp = paired_comparison(score["correct"], starts[start]["correct"])
        results[name] = {"start": start, "samples": samples_file, "pairs": p, "train": settings,
                         "n_pairs": summary["n_pairs"], "weak_chosen": summary["weak_chosen"],
                         "weak_rejected": summary["weak_rejected"],
                         "chosen_accuracy": summary.get("chosen_accuracy"),
                         "rejected_accuracy": summary.get("rejected_accuracy"),
                         "dev_accuracy": score["accuracy"], "dev_ci95": score["ci95"],
                         "start_dev_accuracy": starts[start]["accuracy"], "vs_start": cmp,
                         "seconds": round(time.time() - t0, 1)}
        write_json(out / "results.json", results)
        r = results[name]
        print(f"{name:28s} pairs {r['n_pairs']:4d}  dev {100 * r['dev_accuracy']:.1f} "
              f"[{100 * r['dev_ci95'][0]:.1f}, {100 * r['dev_ci95'][1]:.1f}]  vs start "
              f"{100 * cmp['delta']:+.1f} (p={cmp['p']:.3f})  {r['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
