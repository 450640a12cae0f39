"""metrics.json -> report.md and a self-contained report.html (plots embedded as PNG).

Every number here is recomputed from files in the run directory: eval/*.json (per-model
scores), data/iter*/summary.json (Stage I selection), data/pairs_summary.json (Stage II)
and manifest.json (timings).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from w2s.io import write_json, write_text

ORDER = ["weak", "strong_fewshot", "full_weak"]
LABELS = {
    "weak": "Weak model (floor)",
    "strong_fewshot": "Strong few-shot",
    "full_weak": "Full weak fine-tuning",
    "gold_sft": "Gold SFT (ceiling)",
    "m_plus": "M_plus (Stage I)",
    "m_pro_dpo": "M_pro DPO (Stage II)",
    "m_pro_orpo": "M_pro ORPO (Stage II)",
}


def _order(names):
    stage1 = sorted((n for n in names if n.startswith("stage1_")),
                    key=lambda n: (int(n.split("_")[1][4:]), ["weak", "icl", "hybrid"].index(n.split("_")[2])))
    tail = [n for n in ("m_plus", "m_pro_dpo", "m_pro_orpo", "gold_sft") if n in names]
    head = [n for n in ORDER if n in names]
    rest = sorted(set(names) - set(head) - set(stage1) - set(tail))
    return head + stage1 + tail + rest


def label(name: str) -> str:
    if name.startswith("stage1_"):
        _, it, variant = name.split("_")
        return f"Stage I {it.replace('iter', 'iter ')} {variant}"
    return LABELS.get(name, name)


def pgr(x: float | None, weak: float | None, ceiling: float | None) -> float | None:
    if x is None or weak is None or ceiling is None or ceiling == weak:
        return None
    return (x - weak) / (ceiling - weak)


def collect_metrics(run_dir: str | Path, models: dict[str, str]) -> dict:
    """Gather per-model scores, selection diagnostics and timings into the metrics.json shape:
    {"models": {NAME: {"accuracy", "pass@k", "maj@k", "pgr", ...}}, "selection": {...}, "timings": {...}}"""
    run_dir = Path(run_dir)
    scores: dict[str, dict] = {}
    for name, stage in models.items():
        src = "stage1_iter" + stage[len("sft_iter"):] if name == "m_plus" else name
        f = run_dir / "eval" / f"{src}.json"
        if f.exists():
            s = _read_json(f)
            scores[name] = {k: s.get(k) for k in ("accuracy", "pass@k", "maj@k", "k", "n")}
            lineage = run_dir / "models" / stage / "lineage.json"
            if lineage.exists() and _read_json(lineage).get("untrained"):
                scores[name]["untrained"] = True  # its training set was empty: an unchanged copy
    weak = scores.get("weak", {}).get("accuracy")
    ceiling = scores.get("gold_sft", {}).get("accuracy")
    for s in scores.values():
        s["pgr"] = pgr(s["accuracy"], weak, ceiling)

    selection: dict = {"iterations": []}
    for summ in sorted(run_dir.glob("data/iter*/summary.json"), key=lambda p: int(p.parent.name[4:])):
        selection["iterations"].append(_read_json(summ))
    pairs_file = run_dir / "data" / "pairs_summary.json"
    if pairs_file.exists():
        selection["pairs"] = _read_json(pairs_file)

    timings = {}
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        for name, e in _read_json(manifest).get("stages", {}).items():
            if e.get("seconds") is not None:
                timings[name] = e["seconds"]
    return {"models": {n: scores[n] for n in _order(scores)}, "selection": selection, "timings": timings}


def _read_json(path: Path) -> dict:
    """A run-directory JSON object; a damaged one is a one-line error naming it."""
    from w2s.io import DataError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno} col {e.colno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
        raise DataError(path, f"not valid JSON{where}; restore it, or delete it and rerun the stage "
                              "that writes it") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _fmt(x, pct=True):
    if x is None:
        return "–"
    text = f"{100 * x:.1f}" if pct else f"{x:.2f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def results_table(metrics: dict) -> list[list[str]]:
    rows = [["Model", "Accuracy %", "pass@k %", "maj@k %", "PGR"]]
    for name, m in metrics["models"].items():
        name_cell = label(name) + (" (no training data: unchanged)" if m.get("untrained") else "")
        rows.append([name_cell, _fmt(m.get("accuracy")), _fmt(m.get("pass@k")), _fmt(m.get("maj@k")),
                     _fmt(m.get("pgr"), pct=False)])
    return rows


def selection_rows(metrics: dict) -> list[list[str]]:
    rows = [["Iteration", "Selected", "Coverage %", "Precision % (selected)", "Weak labels % (all)"]]
    for s in metrics["selection"].get("iterations", []):
        rows.append([str(s.get("iteration")), f"{s.get('n_selected')}/{s.get('n_questions')}",
                     _fmt(s.get("coverage")), _fmt(s.get("precision")), _fmt(s.get("weak_accuracy"))])
    return rows


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
    names = list(metrics["models"])
    if names:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.6))
        accs = [100 * (metrics["models"][n]["accuracy"] or 0) for n in names]
        colors = ["#999" if n in ("weak", "gold_sft", "strong_fewshot", "full_weak") else "#3b7dd8" for n in names]
        ax.bar(range(len(names)), accs, color=colors)
        for i, a in enumerate(accs):
            ax.text(i, a + 0.5, f"{a:.1f}", ha="center", fontsize=8)
        for ref, style in (("weak", ":"), ("gold_sft", "--")):
            if ref in metrics["models"]:
                ax.axhline(100 * (metrics["models"][ref]["accuracy"] or 0), color="#555", ls=style, lw=1)
        ax.set_ylim(0, max(accs + [1.0]) * 1.18)
        ax.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Greedy test accuracy (dotted: weak floor, dashed: gold-SFT ceiling)", fontsize=9)
        fig.tight_layout()
        out["accuracy"] = _png(fig, plt)
    conf = metrics["selection"].get("pairs", {}).get("confidences")
    if conf:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(conf, bins=10, range=(0, 1), color="#3b7dd8")
        ax.set_xlabel("majority share among samples (confidence)")
        ax.set_ylabel("questions")
        ax.set_title("Stage II vote confidence")
        fig.tight_layout()
        out["confidence"] = _png(fig, plt)
    return out


def _png(fig, plt) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_markdown(metrics: dict) -> str:
    parts = ["# Weak-to-strong run report", "", "## Results (test set)", "", _md_table(results_table(metrics)), "",
             "PGR = (accuracy - weak) / (gold SFT - weak). pass@k and maj@k use k samples per question.", ""]
    sel = metrics["selection"]
    if sel.get("iterations"):
        parts += ["## Stage I selection (final answer consistency)", "", _md_table(selection_rows(metrics)), ""]
    if sel.get("pairs"):
        p = sel["pairs"]
        parts += ["## Stage II preference pairs", "",
                  f"- pairs: {p.get('n_pairs')} from {p.get('n_questions')} questions "
                  f"(weak chosen: {p.get('weak_chosen')}, weak rejected: {p.get('weak_rejected')})"]
        if p.get("chosen_accuracy") is not None:
            parts.append(f"- chosen side correct: {_fmt(p.get('chosen_accuracy'))}%, "
                         f"rejected side correct: {_fmt(p.get('rejected_accuracy'))}%")
        parts.append("")
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
    sections = [f"<h2>Results (test set)</h2>{_html_table(results_table(metrics))}",
                "<p>PGR = (accuracy &minus; weak) / (gold SFT &minus; weak).</p>"]
    if "accuracy" in plots:
        sections.append(f'<img alt="accuracy chart" src="data:image/png;base64,{plots["accuracy"]}">')
    if sel.get("iterations"):
        sections.append(f"<h2>Stage I selection</h2>{_html_table(selection_rows(metrics))}")
    if sel.get("pairs"):
        p = sel["pairs"]
        items = [f"pairs: {p.get('n_pairs')} from {p.get('n_questions')} questions "
                 f"(weak chosen {p.get('weak_chosen')}, weak rejected {p.get('weak_rejected')})"]
        if p.get("chosen_accuracy") is not None:
            items.append(f"chosen side correct {_fmt(p.get('chosen_accuracy'))}%, rejected side correct "
                         f"{_fmt(p.get('rejected_accuracy'))}%")
        sections.append("<h2>Stage II preference pairs</h2><ul>" +
                        "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        if "confidence" in plots:
            sections.append(f'<img alt="confidence histogram" src="data:image/png;base64,{plots["confidence"]}">')
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
