"""The method's parts, in the order they add their stages. Each module has one `add(graph)` that
adds its stages, each node beside its body; a part whose config section is off adds nothing.
`evals` comes last (every model declared by then is scored), after any extra part a config
names (`parts: ["package.module:function"]`, a function of the `Graph`).

    data       the splits, tiny base models, the weak model, D_weak and D_icl (and icl_samples)
    stage1     selection and the strong model's SFT per iteration; M_plus
    stage2     M_plus's samples, preference pairs, DPO/ORPO -> m_pro_*
    stage3     per round: samples, pseudo-labels, GRPO; m_rl chosen on dev
    baselines  full weak fine-tuning, the gold-SFT ceiling, strong few-shot
    evals      every model on test (and dev), then the report
    hub        (hub.push) the trained models and datasets to the Hugging Face Hub
"""

from __future__ import annotations

from pathlib import Path

from w2s.pipeline.dag import Stage
from w2s.pipeline.graph import PARTS, Graph, dependencies_first
from w2s.pipeline.parts import baselines, data, evals, hub, stage1, stage2, stage3

METHOD_PARTS = (data.add, stage1.add, stage2.add, stage3.add, baselines.add)


def build(cfg, run_dir: Path) -> tuple[list[Stage], dict]:
    """The stage list (dependencies first) and the models the report scores (name -> ModelRef)."""
    graph = Graph(cfg, run_dir)
    for add in METHOD_PARTS:
        add(graph)
    for spec in cfg.parts:
        PARTS.get(spec).obj(graph)
    evals.add(graph)
    hub.add(graph)
    return dependencies_first(graph.stages), graph.models
