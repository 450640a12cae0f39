"""metrics.json -> report.md and a self-contained report.html (plots embedded as PNG).

Every number here is recomputed from files in the run directory: eval/*.json (per-model
scores), data/iter*/summary.json (Stage I selection), data/pairs_summary.json (Stage II)
and manifest.json (timings).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from w2s.io import write_json, write_text
from w2s.method.metrics import bootstrap_ci, paired_comparison, pgr

ORDER = ["weak", "strong_fewshot", "full_weak"]
LABELS = {
    "weak": "Weak model (floor)",
    "strong_fewshot": "Strong few-shot",
    "full_weak": "Full weak fine-tuning",
    "gold_sft": "Gold SFT (ceiling)",
    "m_plus": "M_plus (Stage I)",
    "m_pro_dpo": "M_pro DPO (Stage II)",
    "m_pro_orpo": "M_pro ORPO (Stage II)",
    "m_rl": "m_rl (Stage III, GRPO)",
}


def _order(names):
    stage1 = sorted((n for n in names if n.startswith("stage1_")),
                    key=lambda n: (int(n.split("_")[1][4:]), ["weak", "icl", "hybrid"].index(n.split("_")[2])))
    tail = [n for n in ("m_plus", "m_pro_dpo", "m_pro_orpo", "m_rl", "gold_sft") if n in names]
    head = [n for n in ORDER if n in names]
    rest = sorted(set(names) - set(head) - set(stage1) - set(tail))
    return head + stage1 + tail + rest


def label(name: str) -> str:
    if name.startswith("stage1_"):
        _, it, variant = name.split("_")
        return f"Stage I {it.replace('iter', 'iter ')} {variant}"
    return LABELS.get(name, name)


@dataclass(frozen=True)
class ModelRef:
    """A model the report scores: the directory it lives in (`models/<model_dir>`; None for a
    base model used as is) and the file holding its scores (`eval/<eval_name>.json`: another
    model's when they are the same model, as M_plus is the last Stage I hybrid)."""

    model_dir: str | None
    eval_name: str


def collect_metrics(run_dir: str | Path, models: dict[str, ModelRef]) -> dict:
    """Gather per-model scores, selection diagnostics and timings into the metrics.json shape:
    {"models": {NAME: {"accuracy", "pass@k", "maj@k", "pgr", ...}}, "aliases": {NAME: NAME},
     "selection": {...}, "timings": {...}}"""
    run_dir = Path(run_dir)
    scores: dict[str, dict] = {}
    verdicts: dict[str, dict[str, int]] = {}  # per-question greedy verdicts, for paired comparisons
    lenient: dict[str, dict[str, int]] = {}   # the same under the task's lenient parse (toy)
    for name, ref in models.items():
        f = run_dir / "eval" / f"{ref.eval_name}.json"
        dev = run_dir / "eval_dev" / f"{ref.eval_name}.json"  # greedy on the dev split (settings' choice)
        if not f.exists() and not dev.exists():
            continue
        scores[name] = {"accuracy": None}  # a tuning run (eval.test: false) has dev scores only
        if f.exists():
            s = _read_json(f)
            scores[name] = {k: s.get(k) for k in ("accuracy", "pass@k", "maj@k", "k", "n")}
            if s.get("accuracy_lenient") is not None:  # tasks with a lenient fallback parser (toy)
                scores[name]["accuracy_lenient"] = s["accuracy_lenient"]
                lenient[name] = s.get("correct_lenient") or {}
                scores[name]["ci95_lenient"] = bootstrap_ci(list(lenient[name].values())) if lenient[name] else None
            verdicts[name] = s.get("correct") or {}
            scores[name]["ci95"] = bootstrap_ci(list(verdicts[name].values())) if verdicts[name] else None
        if dev.exists():
            d = _read_json(dev)
            dev_verdicts = list((d.get("correct") or {}).values())
            scores[name].update({"dev_accuracy": d.get("accuracy"),
                                 "dev_ci95": bootstrap_ci(dev_verdicts) if dev_verdicts else None})
            if d.get("accuracy_lenient") is not None:
                scores[name]["dev_accuracy_lenient"] = d["accuracy_lenient"]
        lineage = run_dir / "models" / ref.model_dir / "lineage.json" if ref.model_dir else None
        if lineage and lineage.exists() and _read_json(lineage).get("untrained"):
            scores[name]["untrained"] = True  # its training set was empty: an unchanged copy
    weak = scores.get("weak", {}).get("accuracy")
    ceiling = scores.get("gold_sft", {}).get("accuracy")
    for s in scores.values():
        s["pgr"] = None if None in (weak, ceiling, s["accuracy"]) else pgr(s["accuracy"], weak, ceiling)
    aliases = {name: ref.eval_name for name, ref in models.items() if ref.eval_name != name and name in scores}

    selection: dict = {"iterations": []}
    for summ in sorted(run_dir.glob("data/iter*/summary.json"), key=lambda p: int(p.parent.name[4:])):
        selection["iterations"].append(_read_json(summ))
    pairs_file = run_dir / "data" / "pairs_summary.json"
    if pairs_file.exists():
        selection["pairs"] = _read_json(pairs_file)
    stage3_file = run_dir / "data" / "stage3" / "summary.json"
    stage3 = _read_json(stage3_file) if stage3_file.exists() and "m_rl" in models else None

    timings = {}
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        for name, e in _read_json(manifest).get("stages", {}).items():
            if e.get("seconds") is not None:
                timings[name] = e["seconds"]
    return {"run": run_metadata(run_dir, models), "models": {n: scores[n] for n in _order(scores)},
            "aliases": aliases, "comparisons": comparisons(verdicts),
            **({"comparisons_lenient": comparisons(lenient)} if lenient else {}), "selection": selection,
            **({"stage3": stage3} if stage3 else {}), "timings": timings}


def run_metadata(run_dir: Path, models: dict[str, ModelRef]) -> dict:
    """What a reader needs to place the numbers: the config's essentials, data sizes, the package
    versions the models were trained with, threads, and the run's compute time."""
    import yaml

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
    """The method's key claims as paired comparisons on the same test questions: Stage I over
    full weak fine-tuning, Stage II over Stage I, both over prompting the strong model, and
    Stage II against the gold-SFT ceiling, and Stage III (m_rl) over M_plus and each M_pro."""
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


def significance_lines(metrics: dict) -> list[str]:
    """Each comparison in words: which model is ahead, by how much, and whether it is significant."""
    lines = []
    lenient = {(c["a"], c["b"]): c for c in metrics.get("comparisons_lenient", [])}
    for c in metrics.get("comparisons", []):
        lo, hi = c["ci95"]
        verdict = ("significant" if c["p"] < 0.05 else "not significant") + f" (McNemar p = {c['p']:.3g})"
        line = (f"{label(c['a'])} vs {label(c['b'])}: {100 * c['delta']:+.1f} points "
                f"[95% CI {100 * lo:+.1f}, {100 * hi:+.1f}] on {c['n']} questions, {verdict}")
        cl = lenient.get((c["a"], c["b"]))
        if cl is not None and (cl["a_only"], cl["b_only"]) != (c["a_only"], c["b_only"]):
            line += (f"; lenient: {100 * cl['delta']:+.1f} [{100 * cl['ci95'][0]:+.1f}, {100 * cl['ci95'][1]:+.1f}], "
                     f"{'significant' if cl['p'] < 0.05 else 'not significant'} (p = {cl['p']:.3g})")
        lines.append(line)
    return lines


def _read_json(path: Path) -> dict:
    """A run-directory JSON object; a damaged one is a one-line error naming it."""
    from w2s.io import DataError, read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _fmt(x, pct=True):
    if x is None:
        return "–"
    text = f"{100 * x:.1f}" if pct else f"{x:.2f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _ci(ci) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else "–"


def results_table(metrics: dict) -> list[list[str]]:
    ks = {m.get("k") for m in metrics["models"].values() if m.get("k")}
    k = str(ks.pop()) if len(ks) == 1 else "k"
    lenient = any("accuracy_lenient" in m for m in metrics["models"].values())
    dev = any("dev_accuracy" in m for m in metrics["models"].values())
    if dev and not any(m.get("accuracy") is not None for m in metrics["models"].values()):
        return dev_table(metrics)  # a tuning run: never scored on test
    rows = [["Model", "Accuracy %", "95% CI"] + (["Lenient %"] if lenient else []) +
            [f"pass@{k} %", f"maj@{k} %", "PGR"] + (["Dev %"] if dev else [])]
    for name, m in metrics["models"].items():
        name_cell = label(name) + (" (no training data: unchanged)" if m.get("untrained") else "")
        rows.append([name_cell, _fmt(m.get("accuracy")), _ci(m.get("ci95"))] +
                    ([_fmt(m.get("accuracy_lenient"))] if lenient else []) +
                    [_fmt(m.get("pass@k")), _fmt(m.get("maj@k")), _fmt(m.get("pgr"), pct=False)] +
                    ([_fmt(m.get("dev_accuracy"))] if dev else []))
    return rows


def results_title(metrics: dict) -> str:
    if any(m.get("accuracy") is not None for m in metrics["models"].values()):
        return "Results (test set)"
    return "Results (dev split only: a tuning run, test not scored)"


def dev_table(metrics: dict) -> list[list[str]]:
    """A tuning run's table (eval.test: false): greedy accuracy on the dev split only."""
    lenient = any("dev_accuracy_lenient" in m for m in metrics["models"].values())
    rows = [["Model", "Dev accuracy %", "95% CI"] + (["Dev lenient %"] if lenient else [])]
    for name, m in metrics["models"].items():
        rows.append([label(name), _fmt(m.get("dev_accuracy")), _ci(m.get("dev_ci95"))] +
                    ([_fmt(m.get("dev_accuracy_lenient"))] if lenient else []))
    return rows


def selection_rows(metrics: dict) -> list[list[str]]:
    rows = [["Iteration", "Selected", "Coverage %", "Precision % (selected)", "Weak labels % (all)"]]
    for s in metrics["selection"].get("iterations", []):
        rows.append([str(s.get("iteration")), f"{s.get('n_selected')}/{s.get('n_questions')}",
                     _fmt(s.get("coverage")), _fmt(s.get("precision")), _fmt(s.get("weak_accuracy"))])
    return rows


def pair_rows(metrics: dict) -> list[list[str]]:
    """Stage II pairs by the side the weak response is on, against hidden gold."""
    p = metrics["selection"].get("pairs") or {}
    rows = [["Pairs", "Count", "Chosen correct %", "Rejected correct %", "Pair right %"]]
    for title, prefix, count in (("all", "", p.get("n_pairs")), ("weak chosen", "weak_chosen_", p.get("weak_chosen")),
                                 ("weak rejected", "weak_rejected_", p.get("weak_rejected"))):
        rows.append([title, str(count), _fmt(p.get(f"{prefix}chosen_accuracy")),
                     _fmt(p.get(f"{prefix}rejected_accuracy")), _fmt(p.get(f"{prefix}pair_accuracy"))])
    return rows


def run_lines(metrics: dict) -> list[str]:
    r = metrics.get("run") or {}
    lines = []
    if r.get("task"):
        lines.append(f"task {r['task']}, seed {r.get('seed')}, weak {r.get('weak_model')}, strong {r.get('strong_model')}")
    if r.get("data_sizes"):
        lines.append("data: " + ", ".join(f"{k} {v}" for k, v in r["data_sizes"].items()))
    if r.get("backend"):
        lines.append(f"generation: {r['backend']} backend, {r.get('max_new_tokens')} new tokens; Stage I "
                     f"{r.get('stage1_iterations')} iterations; Stage II k = {r.get('stage2_samples')}; "
                     f"eval k = {r.get('eval_samples')} at T = {r.get('eval_temperature')}"
                     + (f" (intermediate Stage I models: k = {r['eval_intermediate_samples']})"
                        if r.get("eval_intermediate_samples") is not None else "")
                     + f"; M_plus = the last Stage I {r.get('m_plus', 'hybrid')} model")
    if r.get("versions"):
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    if r.get("compute_seconds") is not None:
        lines.append(f"threads: {r.get('threads')} (0 = auto); compute time of the stages: {r['compute_seconds']:.0f} s")
    return lines


def _md_table(rows):
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _plots(metrics: dict) -> dict[str, str]:
    """Base64 PNGs: accuracy bars, and the Stage II confidence histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    names = [n for n, m in metrics["models"].items() if m.get("accuracy") is not None]
    if names:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.6))
        accs = [100 * (metrics["models"][n]["accuracy"] or 0) for n in names]
        colors = ["#999" if n in ("weak", "gold_sft", "strong_fewshot", "full_weak") else "#3b7dd8" for n in names]
        cis = [metrics["models"][n].get("ci95") for n in names]
        err = [[a - 100 * c[0] if c else 0 for a, c in zip(accs, cis)], [100 * c[1] - a if c else 0 for a, c in zip(accs, cis)]]
        ax.bar(range(len(names)), accs, color=colors, yerr=err, capsize=3, ecolor="#333")
        for i, a in enumerate(accs):
            ax.text(i, a + err[1][i] + 0.5, f"{a:.1f}", ha="center", fontsize=8)
        for ref, style in (("weak", ":"), ("gold_sft", "--")):
            if ref in metrics["models"]:
                ax.axhline(100 * (metrics["models"][ref]["accuracy"] or 0), color="#555", ls=style, lw=1)
        ax.set_ylim(0, max(accs + [1.0]) * 1.18)
        ax.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Greedy test accuracy with 95% CI (dotted: weak floor, dashed: gold-SFT ceiling)", fontsize=9)
        fig.tight_layout()
        out["accuracy"] = _png(fig, plt)
    iters = metrics["selection"].get("iterations") or []
    if iters:
        fig, ax = plt.subplots(figsize=(5, 3))
        xs = [s.get("iteration") for s in iters]
        ax.plot(xs, [100 * (s.get("coverage") or 0) for s in iters], "o-", label="coverage")
        if any(s.get("precision") is not None for s in iters):
            ax.plot(xs, [100 * (s.get("precision") or 0) for s in iters], "s-", label="precision (hidden gold)")
        if any(s.get("weak_accuracy") is not None for s in iters):
            ax.axhline(100 * (iters[0].get("weak_accuracy") or 0), color="#555", ls=":", lw=1, label="weak labels")
        ax.set_xticks(xs)
        ax.set_xlabel("Stage I iteration")
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8)
        ax.set_title("Stage I selection")
        fig.tight_layout()
        out["selection"] = _png(fig, plt)
    conf = metrics["selection"].get("pairs", {}).get("confidences")
    if conf:
        fig, ax = plt.subplots(figsize=(5, 3))
        k = metrics["selection"]["pairs"].get("n_samples_per_question")
        if k:  # a share is a multiple of 1/k: one bar per possible share, none split across bins
            ax.bar([i / k for i in range(k + 1)], [sum(round(c * k) == i for c in conf) for i in range(k + 1)],
                   width=0.8 / k, color="#3b7dd8")
        else:
            ax.hist(conf, bins=10, range=(0, 1), color="#3b7dd8")
        ax.set_xlabel("majority share among samples (confidence)")
        ax.set_ylabel("questions")
        ax.set_title("Stage II vote confidence")
        fig.tight_layout()
        out["confidence"] = _png(fig, plt)
    rounds = (metrics.get("stage3") or {}).get("rounds") or []
    if rounds:
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(10, 3.2))
        xs = [r["round"] for r in rounds]
        start_dev = metrics["stage3"].get("start_dev_accuracy")
        if start_dev is not None:  # round 0: the starting policy
            ax.plot([0], [100 * start_dev], "D", color="#555", label="start policy's dev accuracy")
        for key, style, name in (("coverage", "o-", "pseudo-label coverage"),
                                 ("pseudo_label_precision", "s-", "pseudo-label precision (hidden gold)"),
                                 ("mean_reward", "^-", "mean GRPO reward"), ("majority_share", "v--", "majority share"),
                                 ("dev_accuracy", "D-", "dev accuracy (greedy)")):
            if any(r.get(key) is not None for r in rounds):
                ax.plot(xs, [100 * r[key] if r.get(key) is not None else float("nan") for r in rounds], style,
                        label=name)
        ax.axvline(metrics["stage3"].get("chosen_round", xs[-1]), color="#555", ls=":", lw=1)
        ax.set_xticks(([0] if start_dev is not None else []) + xs)
        ax.set_xlabel("Stage III round (dotted: m_rl)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7)
        ax.set_title("Stage III collapse monitor")
        step = 0  # the GRPO reward along training: a running mean over 25 steps, rounds end to end
        for r in rounds:
            curve = r.get("reward_curve") or []
            smooth = [sum(curve[max(0, i - 24):i + 1]) / len(curve[max(0, i - 24):i + 1]) for i in range(len(curve))]
            ax_r.plot(range(step, step + len(curve)), [100 * v for v in smooth], color="#3b7dd8")
            step += len(curve)
            ax_r.axvline(step, color="#999", ls=":", lw=1)
        ax_r.set_xlabel("GRPO step (dotted: end of a round)")
        ax_r.set_ylabel("mean reward % (running mean, 25 steps)")
        ax_r.set_ylim(0, 105)
        ax_r.set_title("Stage III reward during training")
        fig.tight_layout()
        out["stage3"] = _png(fig, plt)
    return out


def stage3_rows(metrics: dict) -> list[list[str]]:
    """Stage III per round: the pseudo-labels (precision from hidden gold, diagnostics only), the
    policy's samples, GRPO's reward, dev accuracy."""
    rows = [["Round", "Labelled", "Coverage %", "Precision %", "Majority share %", "Answer entropy",
             "Mean reward %", "Reward first→last %", "Dev %"]]
    chosen = (metrics.get("stage3") or {}).get("chosen_round")
    for r in (metrics.get("stage3") or {}).get("rounds", []):
        rows.append([f"{r['round']}{' (m_rl)' if r['round'] == chosen else ''}",
                     f"{r.get('n_labelled')}/{r.get('n_questions')}", _fmt(r.get("coverage")),
                     _fmt(r.get("pseudo_label_precision")), _fmt(r.get("majority_share")),
                     _fmt(r.get("answer_entropy"), pct=False), _fmt(r.get("mean_reward")),
                     f"{_fmt(r.get('reward_first'))}→{_fmt(r.get('reward_last'))}", _fmt(r.get("dev_accuracy"))])
    return rows


def stage3_line(metrics: dict) -> str:
    s = metrics["stage3"]
    start = s.get("start_dev_accuracy")
    return (f"reward {s.get('reward')} from {s.get('start')}"
            + (f" (dev {_fmt(start)})" if start is not None else "")
            + f", {len(s.get('rounds', []))} rounds; m_rl = round {s.get('chosen_round')} (chosen by {s.get('chosen_by')})")


def _png(fig, plt) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _strategy(metrics: dict, key: str) -> str:
    """The run's strategy for a stage (`stage1.selection` / `stage2.pairs`), in words."""
    name = (metrics.get("run") or {}).get(key) or {"stage1_selection": "consistency", "stage2_pairs": "paper"}[key]
    return {"consistency": "final answer consistency", "paper": "the paper's rule"}.get(name, f"strategy {name}")


def render_markdown(metrics: dict) -> str:
    parts = ["# Weak-to-strong run report", ""] + [f"- {line}" for line in run_lines(metrics)] + \
        ["", f"## {results_title(metrics)}", "", _md_table(results_table(metrics)), "",
             "PGR = (accuracy - weak) / (gold SFT - weak). pass@k and maj@k use k samples per question. "
             "95% CI: percentile bootstrap over test questions. Accuracy is strict (the task's answer "
             "format only); Lenient, where shown, also takes the task's fallback parse. Dev, where shown: "
             "greedy accuracy on the dev split, the numbers settings are chosen by.", ""]
    if metrics.get("comparisons"):
        parts += ["## Paired comparisons (same test questions)", ""] + \
            [f"- {line}" for line in significance_lines(metrics)] + [""]
    sel = metrics["selection"]
    if sel.get("iterations"):
        parts += [f"## Stage I selection ({_strategy(metrics, 'stage1_selection')})", "",
                  _md_table(selection_rows(metrics)), ""]
    if sel.get("pairs"):
        p = sel["pairs"]
        parts += [f"## Stage II preference pairs ({_strategy(metrics, 'stage2_pairs')})", "",
                  f"- pairs: {p.get('n_pairs')} from {p.get('n_questions')} questions "
                  f"(weak chosen: {p.get('weak_chosen')}, weak rejected: {p.get('weak_rejected')})"]
        if p.get("chosen_accuracy") is not None:
            parts.append(f"- chosen side correct: {_fmt(p.get('chosen_accuracy'))}%, "
                         f"rejected side correct: {_fmt(p.get('rejected_accuracy'))}%")
            parts += ["", _md_table(pair_rows(metrics))]
        parts.append("")
    if metrics.get("stage3"):
        parts += ["## Stage III (label-free GRPO)", "", f"- {stage3_line(metrics)}", "",
                  _md_table(stage3_rows(metrics)), ""]
    if metrics.get("timings"):
        parts += ["## Timings (seconds per stage, last run of each)", "",
                  _md_table([["Stage", "Seconds"]] + [[k, f"{v:.1f}"] for k, v in metrics["timings"].items()]), ""]
    return "\n".join(parts)


def _html_table(rows):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(metrics: dict) -> str:
    plots = _plots(metrics)
    sel = metrics["selection"]
    sections = ["<ul class='run'>" + "".join(f"<li>{html.escape(line)}</li>" for line in run_lines(metrics)) + "</ul>",
                f"<h2>{html.escape(results_title(metrics))}</h2>{_html_table(results_table(metrics))}",
                "<p>PGR = (accuracy &minus; weak) / (gold SFT &minus; weak). 95% CI: percentile bootstrap over "
                "test questions. Accuracy is strict (the task's answer format only); Lenient, where shown, also "
                "takes the task's fallback parse. Dev, where shown: greedy accuracy on the dev split, the "
                "numbers settings are chosen by.</p>"]
    if "accuracy" in plots:
        sections.append(f'<img alt="accuracy chart" src="data:image/png;base64,{plots["accuracy"]}">')
    if metrics.get("comparisons"):
        sections.append("<h2>Paired comparisons (same test questions)</h2><ul>" +
                        "".join(f"<li>{html.escape(line)}</li>" for line in significance_lines(metrics)) + "</ul>")
    if sel.get("iterations"):
        sections.append(f"<h2>Stage I selection ({html.escape(_strategy(metrics, 'stage1_selection'))})</h2>"
                        f"{_html_table(selection_rows(metrics))}")
        if "selection" in plots:
            sections.append(f'<img alt="selection chart" src="data:image/png;base64,{plots["selection"]}">')
    if sel.get("pairs"):
        p = sel["pairs"]
        items = [f"pairs: {p.get('n_pairs')} from {p.get('n_questions')} questions "
                 f"(weak chosen {p.get('weak_chosen')}, weak rejected {p.get('weak_rejected')})"]
        if p.get("chosen_accuracy") is not None:
            items.append(f"chosen side correct {_fmt(p.get('chosen_accuracy'))}%, rejected side correct "
                         f"{_fmt(p.get('rejected_accuracy'))}%")
        sections.append(f"<h2>Stage II preference pairs ({html.escape(_strategy(metrics, 'stage2_pairs'))})</h2><ul>" +
                        "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        if p.get("chosen_accuracy") is not None:
            sections.append(_html_table(pair_rows(metrics)))
        if "confidence" in plots:
            sections.append(f'<img alt="confidence histogram" src="data:image/png;base64,{plots["confidence"]}">')
    if metrics.get("stage3"):
        sections.append(f"<h2>Stage III (label-free GRPO)</h2><p>{html.escape(stage3_line(metrics))}</p>"
                        f"{_html_table(stage3_rows(metrics))}")
        if "stage3" in plots:
            sections.append(f'<img alt="stage III chart" src="data:image/png;base64,{plots["stage3"]}">')
    if metrics.get("timings"):
        sections.append("<h2>Timings</h2>" + _html_table(
            [["Stage", "Seconds"]] + [[k, f"{v:.1f}"] for k, v in metrics["timings"].items()]))
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>w2s report</title>"
            f"<style>{style}</style></head><body><h1>Weak-to-strong run report</h1>{''.join(sections)}</body></html>")


def write_report(run_dir: str | Path, metrics: dict) -> None:
    run_dir = Path(run_dir)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    write_text(run_dir / "report.html", render_html(metrics))
