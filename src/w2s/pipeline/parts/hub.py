"""With `hub.push`, the run's trained models and datasets go to the Hub once the report is
written (w2s.hub). The stage's key follows the report's files, so an unchanged run is not
pushed again."""

from __future__ import annotations

from w2s import hub
from w2s.pipeline.graph import Graph


def add(g: Graph) -> None:
    h = g.cfg.hub
    if not h.push:
        return
    g.add("hub_push", lambda ctx: {"pushed": hub.push_run(ctx.run_dir, g.models, h.prefix, h.private)},
          deps=["report"], params={"prefix": h.prefix, "private": h.private}, kind="report")
