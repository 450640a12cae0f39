"""`w2s demo`: the real pipeline (the same code as `w2s run`) on the toy world.

The demo writes the toy data and a run config into its output directory, then runs the
pipeline there; rerunning resumes it like any run. Settings are the toy world's tuned ones
(see docs/toy_world.md); `--quick` shrinks the data and budgets for smoke tests and CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from w2s.pipeline import run_pipeline
from w2s.pipeline.config import config_from_dict, deep_merge
from w2s.toy import checkpoint_path
from w2s.toy.data import write_splits
from w2s.toy.world import WorldConfig, world_info

#: the demo's world: 2-3 operations and at most one distractor. On the default world (2-5 steps,
#: up to 2 distractors) the fine-tuned weak model is right 4-8 % of the time and the method has
#: nothing to select; here 30-35 % (docs/toy_world.md, "Difficulty probe" and "Status").
DEMO_WORLD = {"max_steps": 3, "max_distractors": 1}

#: dev: labeled, drawn after the other splits (so they are the same with or without it), used for
#: every choice of settings (docs/toy_world.md, "Settings chosen on dev"); test is read once.
FULL = {"sizes": {"train_1": 2000, "train_2": 1000, "test": 1000, "dev": 500}, "weak_steps": 500,
        "strong_steps": 150, "pref_steps": 60, "samples": 10, "eval_n": 10, "iterations": 2}
QUICK = {"sizes": {"train_1": 500, "train_2": 200, "test": 100, "dev": 100}, "weak_steps": 200, "strong_steps": 30,
         "pref_steps": 10, "samples": 4, "eval_n": 2, "iterations": 2}


#: `--stage3`: label-free GRPO after Stage II. Full: per round 200 of train_2's questions, 8 samples
#: each, then 300 GRPO steps of one prompt's 8 completions (~0.3-0.45 s a step on 2 idle cores):
#: about 10 minutes for the two rounds and m_rl's evaluation. The reward and learning rate were
#: chosen on seed 0's dev split (docs/toy_world.md): the majority reward at 3e-5 had the best dev
#: round; the agreement reward (ours) at its best, 1e-5, was within noise of it.
STAGE3_FULL = {"max_questions": 200, "samples": 8, "rounds": 2, "steps": 300, "generations": 8}
STAGE3_QUICK = {"max_questions": 16, "samples": 4, "rounds": 2, "steps": 4, "generations": 4}


def stage3_config(quick: bool = False) -> dict:
    p = STAGE3_QUICK if quick else STAGE3_FULL
    return {"enabled": True, "reward": "majority", "samples": p["samples"], "temperature": 1.0,
            "min_support": max(2, p["samples"] * 3 // 8), "prefer": "weak", "min_confidence": 0.6,
            "rounds": p["rounds"], "max_questions": p["max_questions"],
            "train": {"learning_rate": 3.0e-5, "max_steps": p["steps"], "num_generations": p["generations"],
                      "batch_size": p["generations"], "max_completion_length": 64, "temperature": 1.0,
                      "beta": 0.0, "save_steps": 100, "max_length": 256}}


def demo_config(data_dir: Path, seed: int = 0, quick: bool = False, backend: str = "hf",
                stage3: bool = False, world: str = "v10", train_seed: int | None = None) -> dict:
    """The demo's run config; `seed` is the world's (data) and, unless `train_seed` is given, the
    run's (training order, sampling): several training seeds on one world's data."""
    p = QUICK if quick else FULL
    # no warmup: what every demo number was measured with (until the trl_compat fix, transformers 5
    # dropped the 0.05 this used to say)
    sft = {"learning_rate": 2.0e-3, "batch_size": 32, "max_length": 256, "warmup_ratio": 0.0,
           "lr_scheduler": "cosine", "save_steps": 50}
    return {
        "name": "toy_demo" + ("_quick" if quick else ""),
        # v10's strong base ends few-shot answers with its corpus's markers, which Stage I's data
        # needs rewritten into `#### N`; from v11 on the method sees responses as written
        "task": "toy" if world == "v10" else {"name": "toy", "rewrite_markers": False},
        "seed": seed if train_seed is None else train_seed,
        "threads": 0,  # auto: 2 on an idle machine, 1 on a busy one
        "data": {"gold": str(data_dir / "train_1.jsonl"), "unlabeled": str(data_dir / "train_2.jsonl"),
                 "test": str(data_dir / "test.jsonl"), "dev": str(data_dir / "dev.jsonl")},
        "weak": {"model": str(checkpoint_path("weak", world=world)), "finetune": True,
                 "train": {**sft, "max_steps": p["weak_steps"]},
                 # vLLM's CPU attention has no kernel for the toy weak model's head size (16)
                 **({"backend": "hf"} if backend == "vllm" else {})},
        "strong": {"model": str(checkpoint_path("strong", world=world)),
                   "train": {**sft, "learning_rate": 3.0e-4, "batch_size": 16, "max_steps": p["strong_steps"]}},
        # demo-world solutions restate every sentence: at most 53 tokens
        "generation": {"backend": backend, "max_new_tokens": 80,
                       # vllm: fp32 on CPU by default (so it equals hf), engines kept per stage
                       "options": {"batch_size": 512} if backend == "hf" else {}},
        # chosen on seed 0's dev split (docs/toy_world.md, "Settings chosen on dev"): the in-context
        # Stage I model as M_plus (dev 73.8 against hybrid 72.2), and Stage II pairs labelled by
        # agreement (DPO dev 75.2 against 70.4 with the paper's pairs from the same M_plus)
        "stage1": {"iterations": p["iterations"], "shots": 4, "variants": ["weak", "icl", "hybrid"], "m_plus": "icl"},
        "stage2": {"samples": p["samples"], "temperature": 1.0, "pairs": "agreement", "min_support": 3,
                   "prefer": "icl", "min_confidence": 0.6, "flip_confidence": 0.8,
                   "max_pairs": 1, "method": "both",
                   "train": {"learning_rate": 1.0e-5, "max_steps": p["pref_steps"], "batch_size": 16, "beta": 0.1,
                             "sft_weight": 1.0, "max_length": 256, "save_steps": 50}},
        "baselines": ["weak", "strong_fewshot", "full_weak", "gold_sft"],
        # the paper's pass@k: k samples at T = 1.0 for the reported models; the intermediate
        # Stage I rows are greedy (sampling is most of an evaluation's time)
        "eval": {"n": p["eval_n"], "temperature": 1.0, "intermediate_n": 0},
        **({"stage3": stage3_config(quick)} if stage3 else {}),
    }


def check_world(world: str) -> None:
    """An unknown world, or one whose base models are not in the package (a retired candidate's),
    fails here, before a run directory exists."""
    WorldConfig(version=world)
    for which in ("weak", "strong"):
        checkpoint_path(which, world=world)


def run_demo(out: str | Path, seed: int = 0, quick: bool = False, quiet: bool = False, backend: str = "hf",
             overrides: dict | None = None, stage3: bool = False, world: str = "v10",
             train_seed: int | None = None, dev_size: int | None = None, difficulty: dict | None = None) -> Path:
    """Write the toy data and the demo's config into `out` and run the pipeline there.
    `overrides` (`--set` keys) change the config, e.g. {"eval": {"test": False}} for a tuning run
    scored on the dev split only; `stage3` adds Stage III (GRPO, model m_rl); `train_seed` trains
    and samples with another seed on the same data; `dev_size` sets the dev split's size (drawn
    last: the other splits stay as they are); `difficulty` changes DEMO_WORLD's knobs
    (`max_steps`, `max_distractors`)."""
    out = Path(out)
    data_dir = out / "toy_data"
    p = QUICK if quick else FULL
    if dev_size is not None:
        if isinstance(dev_size, bool) or not isinstance(dev_size, int) or dev_size < 1:
            raise ValueError(f"the dev split's size must be a whole number >= 1, got {dev_size!r}")
        p = {**p, "sizes": {**p["sizes"], "dev": dev_size}}
    config = WorldConfig(**{**DEMO_WORLD, **(difficulty or {})}, version=world)
    # the world's models first: a version without shipped checkpoints fails before any data is written
    raw = deep_merge(demo_config(data_dir, seed, quick, backend, stage3=stage3, world=world, train_seed=train_seed),
                     overrides or {})
    info_path = data_dir / "world.json"
    if not info_path.exists() or json.loads(info_path.read_text()) != world_info(seed, p["sizes"], config):
        write_splits(data_dir, seed, p["sizes"], config)  # decontaminated against the pretraining corpus
    cfg = config_from_dict(raw)  # a bad override fails before anything is written
    (out / "demo.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run_pipeline(cfg, out, quiet=quiet)
    return out
