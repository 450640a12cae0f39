"""metrics.json -> report.md and a self-contained report.html (charts embedded as PNG).

    collect.py   metrics.json's content, every number recomputed from the run directory's files
    tables.py    the report's text: tables and sentences
    sections.py  each section written once, rendered to markdown and to HTML
    plots.py     one function per chart
"""

from __future__ import annotations

from pathlib import Path

from w2s.io import write_json, write_text
from w2s.report.collect import ModelRef, collect_metrics, comparisons  # noqa: F401
from w2s.report.plots import charts
from w2s.report.sections import render_html as _render_html
from w2s.report.sections import render_markdown  # noqa: F401
from w2s.report.tables import label, results_table  # noqa: F401


def render_html(metrics: dict) -> str:
    return _render_html(metrics, charts(metrics))


def write_report(run_dir: str | Path, metrics: dict) -> None:
    run_dir = Path(run_dir)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    write_text(run_dir / "report.html", render_html(metrics))
