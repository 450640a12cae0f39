"""The method's parts, in the order they add their stages. Each module has one `add(graph)`;
a part whose config section is off adds nothing. `evals` comes last (every model declared by
then is scored), after any extra part a config names (`parts: ["package.module:function"]`).

    data       the splits, tiny base models, the weak model, D_weak and D_icl (and icl_samples)
    stage1     selection and the strong model's SFT per iteration; M_plus
    stage2     M_plus's samples, preference pairs, DPO/ORPO -> m_pro_*
    stage3     per round: samples, pseudo-labels, GRPO; m_rl chosen on dev
    baselines  full weak fine-tuning, the gold-SFT ceiling, the weak floor, strong few-shot
    evals      every model on test (and dev), then the report
"""

from w2s.pipeline.parts import baselines, data, evals, stage1, stage2, stage3
from w2s.registry import Registry

PARTS = Registry("pipeline part", key="parts")   # extra parts from outside w2s, by "module:function"
METHOD_PARTS = (data.add, stage1.add, stage2.add, stage3.add, baselines.add)

__all__ = ["METHOD_PARTS", "PARTS", "evals"]
