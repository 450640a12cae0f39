"""Stage III: GRPO (TRL GRPOTrainer) rewarded by offline pseudo-labels, no gold anywhere.

Records are {prompt, pseudo_label} (a question's zero-shot prompt and the answer its pseudo-label
rule gave it, `w2s.method.pseudo_labels`); the reward is a `w2s.method.rewards` entry reading that
column. Generation stops at the task's stop strings (or EOS), and completions are cut there
before grading. `lineage.json` gets `grpo_log`: the mean reward per step (TRL's log history).
"""

from __future__ import annotations

import os
from pathlib import Path

from w2s.method import rewards
from w2s.tasks import make_task
from w2s.training import trl_grpo
from w2s.training.run import run_training
from w2s.training.settings import GRPOSettings

GRPO_TRAIN_FIELDS = ("prompt", "pseudo_label")


def _dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict({k: [r[k] for r in records] for k in GRPO_TRAIN_FIELDS})


def train_grpo(model: str | os.PathLike, data, out_dir: str | os.PathLike, config: GRPOSettings | None = None,
               *, callbacks=()) -> Path:
    """GRPO of `model` on {prompt, pseudo_label} records (a file or a list), rewarded by the
    `config.reward` entry of `w2s.method.rewards.REWARDS` for `config.task`; writes a loadable
    model dir with lineage.json (incl. grpo_log) and DONE."""
    settings = config or GRPOSettings()
    if not isinstance(settings, GRPOSettings):
        raise TypeError(f"config must be GRPOSettings, got {type(settings).__name__}")
    task, reward = make_task(settings.task), settings.reward
    rewards.bind(reward, task)  # an unknown reward fails before the model loads

    def build(model_obj, tokenizer, records, ckpt_dir, peft_config, cbs):
        eos = {tokenizer.eos_token_id, *_as_list(model_obj.generation_config.eos_token_id)} - {None}
        fn = rewards.bind(reward, task, eos, strict=settings.strict_answers, seed=settings.seed)
        trainer = trl_grpo.grpo_trainer(model_obj, tokenizer, _dataset(records), [fn], settings, ckpt_dir,
                                          stop=task.stop, peft_config=peft_config, callbacks=cbs)
        if settings.drop_zero_std:
            trl_grpo.keep_signal_only(trainer)
        return trainer

    def extra(trainer) -> dict:
        return {"reward": reward, "task": task.name, "grpo_log": trl_grpo.grpo_log(trainer)}

    return run_training(kind="grpo", model=str(model), data=data, out_dir=out_dir, settings=settings,
                        fields=GRPO_TRAIN_FIELDS, build_trainer=build, extra_lineage=extra, callbacks=callbacks)


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]
