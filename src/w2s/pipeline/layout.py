"""Every path of a run directory, in one place, and how the report finds a model.

    runs/NAME/
      config.yaml  manifest.json  log.txt  metrics.json  report.md  report.html
      data/questions/{gold,unlabeled,hidden_gold,test,dev}.jsonl   # unlabeled: questions only
      data/d_weak.jsonl  data/d_icl.jsonl  data/icl_samples.jsonl   # Stage I columns (+ samples)
      data/iter{i}/{weak,icl,hybrid}.jsonl + summary.json           # Stage I selections
      data/samples.jsonl  data/pairs.jsonl  data/pairs_summary.json # Stage II
      data/stage3/round{r}/{samples,train}.jsonl + labels_summary.json, data/stage3/summary.json
      models/STAGE/  (lineage.json, DONE)   models/m_rl -> stage3_round{r}
      eval/NAME.json (+ generations)  eval_dev/NAME.json
      work/        partial work of interrupted stages, keyed
"""

from __future__ import annotations

from pathlib import Path

Q_GOLD = "data/questions/gold.jsonl"
Q_UNLABELED = "data/questions/unlabeled.jsonl"
Q_HIDDEN = "data/questions/hidden_gold.jsonl"      # read by diagnostics and the gold-SFT ceiling only
Q_TEST = "data/questions/test.jsonl"
Q_DEV = "data/questions/dev.jsonl"                 # only with data.dev
SPLIT_FILES = {"gold": Q_GOLD, "unlabeled": Q_UNLABELED, "hidden_gold": Q_HIDDEN, "test": Q_TEST, "dev": Q_DEV}

D_WEAK = "data/d_weak.jsonl"
D_ICL = "data/d_icl.jsonl"
D_ICL_SAMPLES = "data/icl_samples.jsonl"           # only when an entry needs `icl_samples`
SAMPLES = "data/samples.jsonl"
PAIRS = "data/pairs.jsonl"
PAIRS_SUMMARY = "data/pairs_summary.json"
STAGE3_SUMMARY = "data/stage3/summary.json"

#: named inputs a registered strategy may need (`needs`): the stage that makes each, its file
INPUT_FILES = {"icl_gens": ("icl_answers", D_ICL), "icl_samples": ("icl_samples", D_ICL_SAMPLES),
               "d_weak": ("weak_answers", D_WEAK), "d_icl": ("icl_answers", D_ICL),   # iteration 1's columns
               "hidden_gold": ("load_data", Q_HIDDEN)}   # controls only (w2s.method.controls)


def iteration_dir(i: int) -> str:
    return f"data/iter{i}"


def stage3_dir(r: int) -> str:
    return f"data/stage3/round{r}"


def model_rel(stage: str) -> str:
    return f"models/{stage}"


def eval_rel(report_name: str, split: str = "test", temperature: float | None = None) -> str:
    """A model's scores: eval/NAME.json (test), eval_dev/NAME.json (dev, greedy), and for the
    temperature sweep on dev eval_dev/temperatures/NAME.t0.3.json."""
    if temperature is not None:
        return f"eval_dev/temperatures/{report_name}.t{float(temperature):g}.json"
    return f"{'eval' if split == 'test' else 'eval_dev'}/{report_name}.json"


def label(run_dir: Path, model: str) -> str:
    """How records name a model: relative to the run directory when it lives there, so a run's
    files are the same wherever the directory is (or is moved to)."""
    path = Path(model)
    return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else model

