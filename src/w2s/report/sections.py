"""The report as sections, each written ONCE (title, bullet lines, tables, a note, a chart) and
rendered twice: report.md and a self-contained report.html. Text from the run (config values,
model names) is escaped for each format: no raw HTML in either, no line or table row broken."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from w2s.report import tables as t

NOTE = ("PGR = (accuracy - weak) / (gold SFT - weak). pass@k, maj@k and avg@k use k samples per question "
        "(avg@k: their mean accuracy). 95% CI: percentile bootstrap over test questions. Accuracy is strict "
        "(the task's answer format only); Lenient, where shown, also takes the task's fallback parse. Dev, "
        "where shown: greedy accuracy on the dev split, the numbers settings are chosen by.")


@dataclass
class Section:
    title: str | None
    bullets: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    note: str | None = None
    chart: str | None = None     # a key of plots.charts()


def sections(metrics: dict) -> list[Section]:
    out = [Section(None, bullets=t.run_lines(metrics)),
           Section(t.results_title(metrics), tables=[t.results_table(metrics)], note=NOTE, chart="accuracy")]
    if metrics.get("comparisons"):
        out.append(Section("Paired comparisons (same test questions)", bullets=t.significance_lines(metrics)))
    elif metrics.get("comparisons_dev"):  # a tuning run: the differences settings are chosen by
        out.append(Section("Paired comparisons (same dev questions)", bullets=t.significance_lines(metrics, "dev")))
    sel = metrics["selection"]
    if sel.get("iterations"):
        out.append(Section(f"Stage I selection ({t.strategy_words(metrics, 'stage1_selection')})",
                           tables=[t.selection_rows(metrics)], chart="selection"))
    if sel.get("pairs"):
        p = sel["pairs"]
        out.append(Section(f"Stage II preference pairs ({t.strategy_words(metrics, 'stage2_pairs')})",
                           bullets=t.pair_lines(metrics),
                           tables=[t.pair_rows(metrics)] if p.get("chosen_accuracy") is not None else [],
                           chart="vote_shares"))
    if metrics.get("temperature_sweep"):
        out.append(Section("Self-consistency on dev (M_plus: the vote against greedy, by temperature)",
                           bullets=[t.sweep_line(metrics)], tables=[t.sweep_rows(metrics)]))
    if metrics.get("stage3"):
        control = metrics["stage3"].get("control")
        title = f"Stage III CONTROL ({control} reward; not label-free)" if control else "Stage III (label-free GRPO)"
        out.append(Section(title, bullets=[t.stage3_line(metrics)],
                           tables=[t.stage3_rows(metrics)], chart="stage3"))
    if metrics.get("timings"):
        out.append(Section("Timings (seconds per stage, last run of each)",
                           bullets=[t.machine_line(metrics)] if metrics.get("machine") else [],
                           tables=[t.timing_rows(metrics)], chart="timings"))
    return out


# ---- markdown ---------------------------------------------------------------------
def md_text(text: object) -> str:
    """Run text inside markdown: no raw HTML, nothing that starts a new line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(s.splitlines())


def md_table(rows: list[list[str]]) -> str:
    def cell(c: str) -> str:
        return md_text(c).replace("|", "\\|")
    out = ["| " + " | ".join(map(cell, rows[0])) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(out + ["| " + " | ".join(map(cell, r)) + " |" for r in rows[1:]])


def render_markdown(metrics: dict) -> str:
    parts = ["# Weak-to-strong run report", ""]
    for s in sections(metrics):
        parts += [f"## {md_text(s.title)}", ""] if s.title else []
        parts += [f"- {md_text(line)}" for line in s.bullets] + ([""] if s.bullets else [])
        for table in s.tables:
            parts += [md_table(table), ""]
        parts += [md_text(s.note), ""] if s.note else []
    return "\n".join(parts)


# ---- HTML ---------------------------------------------------------------------------
ALT = {"accuracy": "accuracy chart", "selection": "selection chart", "vote_shares": "confidence histogram",
       "stage3": "stage III chart", "timings": "timing chart"}
STYLE = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
         "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(metrics: dict, charts: dict[str, str]) -> str:
    body = []
    for s in sections(metrics):
        body += [f"<h2>{html.escape(s.title)}</h2>"] if s.title else []
        if s.bullets:
            body.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in s.bullets) + "</ul>")
        body += [html_table(table) for table in s.tables]
        body += [f"<p>{html.escape(s.note)}</p>"] if s.note else []
        if s.chart in charts:
            body.append(f'<img alt="{ALT[s.chart]}" src="data:image/png;base64,{charts[s.chart]}">')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>w2s report</title>"
            f"<style>{STYLE}</style></head><body><h1>Weak-to-strong run report</h1>{''.join(body)}</body></html>")
