"""The strategies table of docs/toy_world.md: every Stage I selection strategy's coverage and
precision and every Stage II pair strategy's correctness, on one finished demo run.

    nice -n 10 python bench/strategies_table.py --run /work/runs_final/demo_s0 --out OUT

Reads the run's data/{d_weak,d_icl,samples}.jsonl and data/questions/{unlabeled,hidden_gold}.jsonl
and its config.yaml (read only). The `confidence` selection needs k in-context samples of the BASE
strong model on train_2, which a run without `stage1.selection: confidence` has not made: the
script generates them once into OUT/icl_samples.jsonl (the pipeline's 4-shot prompts, k=4, T=1.0,
hf backend; resumable) and reuses the file afterwards. Prints a markdown table; writes OUT/table.json.
Gold is read only to score what each strategy picked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from w2s import steps
from w2s.io import read_records, write_json


def icl_samples(run: Path, out: Path, task, cfg: dict, k: int, temperature: float, threads: int) -> list[dict]:
    """The base strong model's k in-context samples per train_2 question, as the pipeline's
    `icl_samples` stage makes them (same prompts, same sampling settings)."""
    path = out / "icl_samples.jsonl"
    partial = out / "icl_samples.partial.jsonl"
    if path.exists():
        return read_records(path)
    import torch

    from w2s.generation import SamplingConfig
    from w2s.toy import checkpoint_path

    torch.set_num_threads(threads)
    questions = read_records(run / "data/questions/unlabeled.jsonl")
    prompts = steps.fewshot_prompts(task, questions, read_records(run / "data/d_weak.jsonl"),
                                    k=cfg["stage1"]["shots"], seed=cfg["seed"], demo_questions=questions)
    # the pipeline's greedy in-context answers were made from these very prompts
    d_icl = {r["id"]: r["prompt"] for r in read_records(run / "data/d_icl.jsonl")}
    assert all(d_icl[p["id"]] == p["prompt"] for p in prompts), "prompts differ from the run's d_icl.jsonl"
    sampling = SamplingConfig(max_new_tokens=cfg["generation"]["max_new_tokens"], temperature=temperature,
                              n=k, stop=tuple(task.stop), seed=cfg["seed"])
    return steps.generate_file(str(checkpoint_path("strong")), prompts, sampling, path, partial=partial,
                               backend="hf", batch_size=cfg["generation"]["options"].get("batch_size", 64))


def _side_precision(task, records: list[dict], golds: dict[str, str]) -> float | None:
    """Share of SFT records whose completion's final answer is gold (what a variant teaches)."""
    graded = [task.matches(task.extract_answer(r["completion"]), golds[r["id"]]) for r in records if r["id"] in golds]
    return sum(graded) / len(graded) if graded else None


def table(run: Path, task, cfg: dict, samples_icl: list[dict]) -> dict:
    from w2s.method import metrics
    from w2s.method.registry import PAIRS, SELECTION

    questions = read_records(run / "data/questions/unlabeled.jsonl")
    gold = read_records(run / "data/questions/hidden_gold.jsonl")
    golds = metrics.golds_of(gold)
    weak, icl = read_records(run / "data/d_weak.jsonl"), read_records(run / "data/d_icl.jsonl")
    s2 = cfg["stage2"]
    runs = [(name, {}) for name in sorted(SELECTION) if name != "confidence"]
    runs += [("confidence", {"threshold": t}) for t in (0.5, 0.75, 1.0)]
    selection_rows = []
    for name, extra in runs:
        context = {"seed": cfg["seed"], **({"icl_samples": samples_icl} if name == "confidence" else {}), **extra}
        sel, summary = steps.select(task, questions, weak, icl, gold=gold, strategy=name, **context)
        selection_rows.append({"strategy": name, **extra, "n_selected": summary["n_selected"],
                               "coverage": summary["coverage"], "precision": summary.get("precision"),
                               "weak_records": len(sel.weak),
                               "weak_records_correct": _side_precision(task, sel.weak, golds),
                               "icl_records_correct": _side_precision(task, sel.icl, golds)})
    samples = read_records(run / "data/samples.jsonl")
    pair_rows = []
    for name in sorted(PAIRS):
        built, summary = steps.preference_pairs(task, questions, weak, samples, min_confidence=s2["min_confidence"],
                                                flip_confidence=s2["flip_confidence"], max_pairs=s2["max_pairs"],
                                                seed=cfg["seed"], gold=gold, strategy=name)
        pair_rows.append({"strategy": name, **{k: summary.get(k) for k in (
            "n_pairs", "n_questions_with_pairs", "weak_chosen", "weak_rejected", "chosen_accuracy",
            "rejected_accuracy", "pair_accuracy")}})
    reference = {"weak_accuracy": metrics.greedy_accuracy(task, weak, golds),
                 "icl_accuracy": metrics.greedy_accuracy(task, icl, golds), "n_questions": len(questions),
                 "icl_samples_per_question": max((len(v) for v in _groups(samples_icl).values()), default=0)}
    return {"reference": reference, "selection": selection_rows, "pairs": pair_rows}


def _groups(gens):
    from w2s.records import group_by_id

    return group_by_id(gens)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(result: dict) -> str:
    ref = result["reference"]
    lines = [f"Stage I, iteration 1 ({ref['n_questions']} train_2 questions; weak answers right "
             f"{_pct(ref['weak_accuracy'])} %, in-context answers {_pct(ref['icl_accuracy'])} %):", "",
             "| `stage1.selection` | selected | coverage % | precision % | weak records (right %) "
             "| icl records right % |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["selection"]:
        name = r["strategy"] + (f" ({r['threshold']:g})" if "threshold" in r else "")
        lines.append(f"| `{name}` | {r['n_selected']} | {_pct(r['coverage'])} | {_pct(r['precision'])} | "
                     f"{r['weak_records']} ({_pct(r['weak_records_correct'])}) | {_pct(r['icl_records_correct'])} |")
    lines += ["", "Stage II (M_plus's samples):", "",
              "| `stage2.pairs` | pairs | questions | weak chosen / rejected | chosen right % | rejected right % "
              "| pair right % |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["pairs"]:
        lines.append(f"| `{r['strategy']}` | {r['n_pairs']} | {r['n_questions_with_pairs']} | "
                     f"{r['weak_chosen']} / {r['weak_rejected']} | {_pct(r['chosen_accuracy'])} | "
                     f"{_pct(r['rejected_accuracy'])} | {_pct(r['pair_accuracy'])} |")
    return "\n".join(lines)


def write_fixture(run: Path, out: Path, samples_icl: list[dict], n: int) -> None:
    """The first n train_2 questions' generations, for tests (prompts dropped: the questions are
    in unlabeled.jsonl, and the few-shot prompts are most of the bytes)."""
    from w2s.io import write_jsonl

    questions = read_records(run / "data/questions/unlabeled.jsonl")[:n]
    ids = {q["id"] for q in questions}
    keep = ("id", "response", "sample_index", "finish_reason")
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "unlabeled.jsonl", questions)
    write_jsonl(out / "hidden_gold.jsonl", [{"id": r["id"], "answer": r["answer"]}
                                            for r in read_records(run / "data/questions/hidden_gold.jsonl")
                                            if r["id"] in ids])
    files = {name: read_records(run / f"data/{name}.jsonl") for name in ("d_weak", "d_icl", "samples")}
    for name, rows in (*files.items(), ("icl_samples", samples_icl)):
        write_jsonl(out / f"{name}.jsonl", [{k: r[k] for k in keep if k in r} for r in rows if r["id"] in ids])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished demo run directory (read only)")
    ap.add_argument("--out", required=True, help="where the in-context samples and table.json go")
    ap.add_argument("--k", type=int, default=4, help="in-context samples per question (confidence)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--fixture", help="also write the first --fixture-n questions' files here (tests)")
    ap.add_argument("--fixture-n", type=int, default=80)
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    task = steps.make_task(cfg["task"])
    samples_icl = icl_samples(run, out, task, cfg, args.k, args.temperature, args.threads)
    if args.fixture:
        write_fixture(run, Path(args.fixture), samples_icl, args.fixture_n)
    if args.generate_only:
        return 0
    result = table(run, task, cfg, samples_icl)
    write_json(out / "table.json", result)
    print(markdown(result))
    print(json.dumps(result["reference"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
