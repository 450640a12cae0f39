"""metrics.json's content, every number recomputed from files in the run directory: eval/*.json
and eval_dev/*.json (per-model scores), data/iter*/summary.json (Stage I selection),
data/pairs_summary.json (Stage II), data/stage3/summary.json (Stage III) and manifest.json
(timings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

from w2s.io import DataError, read_json
from w2s.method.metrics import bootstrap_ci, paired_comparison, pgr

ORDER = ["weak", "strong_fewshot", "full_weak"]


def _order(names):
    stage1 = sorted((n for n in names if n.startswith("stage1_")),
                    key=lambda n: (int(n.split("_")[1][4:]), ["weak", "icl", "hybrid"].index(n.split("_")[2])))
    tail = [n for n in ("m_plus", "m_pro_dpo", "m_pro_orpo", "m_rl", "gold_sft") if n in names]
    head = [n for n in ORDER if n in names]
    rest = sorted(set(names) - set(head) - set(stage1) - set(tail))
    return head + stage1 + tail + rest


@dataclass(frozen=True)
class ModelRef:
    """A model the report scores: the directory it lives in (`models/<model_dir>`; None for a
    base model used as is) and the file holding its scores (`eval/<eval_name>.json`: another
    model's when they are the same model, as M_plus is the last Stage I hybrid)."""

    model_dir: str | None
    eval_name: str


def collect_metrics(run_dir: str | Path, models: dict[str, ModelRef],
                    sweep_files: Mapping[float, str] | None = None) -> dict:
    """Gather per-model scores, selection diagnostics and timings into the metrics.json shape:
    {"models": {NAME: {"accuracy", "pass@k", "maj@k", "avg@k", "pgr", ...}}, "aliases": {NAME: NAME},
     "selection": {...}, "temperature_sweep": {...}, "timings": {...}}. `sweep_files`: M_plus's
    temperature-sweep files by temperature, relative to the run directory; only these are read (a
    file left by an earlier config is not this run's)."""
    run_dir = Path(run_dir)
    scores: dict[str, dict] = {}
    verdicts: dict[str, dict[str, int]] = {}  # per-question greedy verdicts, for paired comparisons
    lenient: dict[str, dict[str, int]] = {}   # the same under the task's lenient parse (toy)
    dev: dict[str, dict[str, int]] = {}       # on dev, where settings are chosen (a tuning run has no test)
    for name, ref in models.items():
        row = model_scores(run_dir, ref, (verdicts, lenient, dev), name)
        if row is not None:
            scores[name] = row
    weak = scores.get("weak", {}).get("accuracy")
    ceiling = scores.get("gold_sft", {}).get("accuracy")
    for s in scores.values():
        s["pgr"] = None if None in (weak, ceiling, s["accuracy"]) else pgr(s["accuracy"], weak, ceiling)
    aliases = {name: ref.eval_name for name, ref in models.items() if ref.eval_name != name and name in scores}
    stage3_file = run_dir / "data" / "stage3" / "summary.json"
    stage3 = _read_json(stage3_file) if stage3_file.exists() and "m_rl" in models else None
    sweep = temperature_sweep(run_dir, models, sweep_files or {})
    return {"run": run_metadata(run_dir, models), "models": {n: scores[n] for n in _order(scores)},
            "aliases": aliases, "comparisons": comparisons(verdicts),
            **({"comparisons_lenient": comparisons(lenient)} if lenient else {}),
            **({"comparisons_dev": comparisons(dev)} if dev else {}),
            "selection": selection_summaries(run_dir), **({"stage3": stage3} if stage3 else {}),
            **({"temperature_sweep": sweep} if sweep else {}),
            "timings": stage_timings(run_dir), **arithmetic_timings(run_dir)}


def model_scores(run_dir: Path, ref: ModelRef, into: tuple[dict, dict, dict], name: str) -> dict | None:
    """One model's row from its eval files (test, and dev: the numbers settings are chosen by);
    its per-question verdicts go into `into`'s (test, test lenient, dev) maps. None when it has no
    eval yet."""
    verdicts, lenient, dev_by_model = into
    f = run_dir / "eval" / f"{ref.eval_name}.json"
    dev = run_dir / "eval_dev" / f"{ref.eval_name}.json"
    if not f.exists() and not dev.exists():
        return None
    row: dict = {"accuracy": None}  # a tuning run (eval.test: false) has dev scores only
    if f.exists():
        s = _read_json(f)
        row = {k: s.get(k) for k in ("accuracy", "pass@k", "maj@k", "k", "n")}
        if s.get("avg@k") is not None:
            row["avg@k"] = s["avg@k"]
        if s.get("accuracy_lenient") is not None:  # tasks with a lenient fallback parser (toy)
            row["accuracy_lenient"] = s["accuracy_lenient"]
            lenient[name] = s.get("correct_lenient") or {}
            row["ci95_lenient"] = bootstrap_ci(list(lenient[name].values())) if lenient[name] else None
        verdicts[name] = s.get("correct") or {}
        row["ci95"] = bootstrap_ci(list(verdicts[name].values())) if verdicts[name] else None
    if dev.exists():
        d = _read_json(dev)
        dev_by_model[name] = d.get("correct") or {}
        dev_verdicts = list(dev_by_model[name].values())
        row.update({"dev_accuracy": d.get("accuracy"), "dev_ci95": bootstrap_ci(dev_verdicts) if dev_verdicts else None})
        if d.get("accuracy_lenient") is not None:
            row["dev_accuracy_lenient"] = d["accuracy_lenient"]
    lineage = run_dir / "models" / ref.model_dir / "lineage.json" if ref.model_dir else None
    if lineage and lineage.exists() and _read_json(lineage).get("untrained"):
        row["untrained"] = True  # its training set was empty: an unchanged copy
    return row


def temperature_sweep(run_dir: Path, models: dict[str, ModelRef], files: Mapping[float, str]) -> dict | None:
    """M_plus on dev at each swept temperature: its greedy accuracy, and of its k samples maj@k,
    avg@k, pass@k and maj@k - greedy with its paired 95% CI and McNemar p (does voting beat greedy
    decoding? the premise of Stage II's pairs and the majority rewards). None when no sweep file
    exists yet."""
    ref = models.get("m_plus")
    rows = []
    for temperature, rel in files.items() if ref else ():
        f = run_dir / rel
        if f.exists():
            s = _read_json(f)
            greedy, maj = s.get("accuracy"), s.get("maj@k")
            paired = paired_comparison(s["correct_maj"], s["correct"]) if s.get("correct_maj") and s.get("correct") else None
            rows.append({"temperature": float(temperature), "k": s.get("k"), "greedy": greedy, "maj@k": maj,
                         "avg@k": s.get("avg@k"), "pass@k": s.get("pass@k"),
                         "maj_minus_greedy": None if None in (greedy, maj) else maj - greedy,
                         # the same questions: paired bootstrap CI and McNemar p of maj@k - greedy
                         "maj_minus_greedy_ci95": paired and paired["ci95"], "maj_minus_greedy_p": paired and paired["p"]})
    if not rows:
        return None
    best = max((r for r in rows if r["maj_minus_greedy"] is not None), key=lambda r: r["maj_minus_greedy"], default=None)
    return {"model": "m_plus", "eval_name": ref.eval_name, "split": "dev", "rows": rows,
            "best_maj_minus_greedy": best and {"temperature": best["temperature"], "value": best["maj_minus_greedy"]}}


def selection_summaries(run_dir: Path) -> dict:
    """Stage I's summary per iteration and Stage II's pairs summary, as the stages wrote them."""
    selection: dict = {"iterations": []}
    for summ in sorted(run_dir.glob("data/iter*/summary.json"), key=lambda p: int(p.parent.name[4:])):
        selection["iterations"].append(_read_json(summ))
    pairs_file = run_dir / "data" / "pairs_summary.json"
    if pairs_file.exists():
        selection["pairs"] = _read_json(pairs_file)
    return selection


def stage_timings(run_dir: Path) -> dict[str, float]:
    manifest = run_dir / "manifest.json"
    if not manifest.exists():
        return {}
    return {name: e["seconds"] for name, e in _read_json(manifest).get("stages", {}).items()
            if e.get("seconds") is not None}


def arithmetic_timings(run_dir: Path) -> dict:
    """From plan.json: the machine's measured matrix-product rate, and per stage that ran, its
    planned arithmetic in seconds at that rate and the share of the rate the stage reached
    (arithmetic seconds / measured seconds; 1 = the machine's limit)."""
    plan_file = run_dir / "plan.json"
    if not plan_file.exists():
        return {}
    plan, seconds = _read_json(plan_file), stage_timings(run_dir)
    rate = (plan.get("machine") or {}).get("flops_per_s")
    if not rate:
        return {}
    rows = {}
    for name, work in plan.get("stages", {}).items():
        if work.get("flops") and seconds.get(name):
            at_rate = work["flops"] / rate
            rows[name] = {"flops": work["flops"], "arithmetic_seconds": float(f"{at_rate:.4g}"),
                          "share_of_machine_rate": float(f"{at_rate / seconds[name]:.4g}")}
    return {"machine": plan["machine"], "arithmetic": rows}


def run_metadata(run_dir: Path, models: dict[str, ModelRef]) -> dict:
    """What a reader needs to place the numbers: the config's essentials, data sizes, the package
    versions the models were trained with, threads, and the run's compute time."""
    out: dict = {}
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        g, s2, ev = cfg.get("generation", {}), cfg.get("stage2", {}), cfg.get("eval", {})
        out.update({"name": cfg.get("name"), "task": cfg.get("task"), "seed": cfg.get("seed"),
                    "weak_model": cfg.get("weak", {}).get("model"), "strong_model": cfg.get("strong", {}).get("model"),
                    "threads": cfg.get("threads"), "backend": g.get("backend"),
                    "max_new_tokens": g.get("max_new_tokens"), "stage1_iterations": cfg.get("stage1", {}).get("iterations"),
                    "stage2_samples": s2.get("samples") if s2.get("enabled", True) else None,
                    "stage1_selection": cfg.get("stage1", {}).get("selection", "consistency"),
                    "stage2_pairs": s2.get("pairs", "paper"),
                    "eval_samples": ev.get("n"), "eval_temperature": ev.get("temperature"),
                    "eval_intermediate_samples": ev.get("intermediate_n"),
                    "m_plus": cfg.get("stage1", {}).get("m_plus", "hybrid")})
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        m = _read_json(manifest)
        info = m.get("stages", {}).get("load_data", {}).get("info") or {}
        out["data_sizes"] = {k[2:]: v for k, v in info.items() if k.startswith("n_")}
        out["compute_seconds"] = round(sum(e.get("seconds") or 0 for e in m.get("stages", {}).values()), 1)
    for ref in models.values():
        lineage = run_dir / "models" / ref.model_dir / "lineage.json" if ref.model_dir else None
        if lineage and lineage.exists():
            versions = _read_json(lineage).get("versions")
            if versions:
                out["versions"] = versions
                break
    return out


def comparisons(verdicts: dict[str, dict[str, int]]) -> list[dict]:
    """The method's key claims as paired comparisons on the same questions of one split (test or
    dev): Stage I over full weak fine-tuning, Stage II over Stage I, both over prompting the strong
    model, Stage II against the gold-SFT ceiling, and Stage III (m_rl) over M_plus and each M_pro."""
    pro = sorted(n for n in verdicts if n.startswith("m_pro_"))
    wanted = [("m_plus", "full_weak")] + [(p, "m_plus") for p in pro] + \
        [(m, "strong_fewshot") for m in ["m_plus", *pro]] + [(p, "gold_sft") for p in pro] + \
        [("m_rl", m) for m in ["m_plus", *pro]]
    out = []
    for a, b in wanted:
        if verdicts.get(a) and verdicts.get(b):
            c = paired_comparison(verdicts[a], verdicts[b])
            if c is not None:
                out.append({"a": a, "b": b, **c})
    return out


def _read_json(path: Path) -> dict:
    """A run-directory JSON object; a damaged one is a one-line error naming it."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object, got {type(data).__name__}")
    return data
