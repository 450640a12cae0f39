"""Supervised fine-tuning on prompt/completion records (TRL SFTTrainer).

Loss on the completion only, EOS appended to every completion, optional packing or
padding-free batching, full fine-tuning or LoRA.
"""

from __future__ import annotations

import os
from pathlib import Path

from w2s.training import trl_compat
from w2s.training.run import run_training
from w2s.training.settings import SFTSettings

SFT_TRAIN_FIELDS = ("prompt", "completion")


def _truncate(records: list[dict], tokenizer, max_length: int) -> list[dict]:
    """Cut completions so prompt + completion + EOS fits max_length (padding-free without
    packing: TRL does not truncate in that mode)."""
    out = []
    for r in records:
        p = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
        room = max_length - len(p) - 1
        if len(c) > room:
            r = {**r, "completion": tokenizer.decode(c[:max(room, 0)])}
        out.append(r)
    return out


def _dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [r["prompt"] for r in records],
                              "completion": [r["completion"] for r in records]})


def train_sft(model: str | os.PathLike, data, out_dir: str | os.PathLike,
              config: SFTSettings | None = None, *, callbacks=()) -> Path:
    """Fine-tune `model` (a model directory) on sft records (`data`: a file or a list of
    {prompt, completion} dicts); write a loadable model dir with lineage.json and DONE.

    Resumes from OUT/checkpoints when a previous run with the same model, data and config was
    interrupted; returns immediately when OUT is already complete for the same inputs."""
    settings = config or SFTSettings()
    if not isinstance(settings, SFTSettings):
        raise TypeError(f"config must be SFTSettings, got {type(settings).__name__}")

    def build(model_obj, tokenizer, records, ckpt_dir, peft_config, cbs):
        if settings.padding_free and not settings.packing:
            records = _truncate(records, tokenizer, settings.max_length)
        return trl_compat.sft_trainer(model_obj, tokenizer, _dataset(records), settings, ckpt_dir,
                                      peft_config=peft_config, callbacks=cbs)

    return run_training(kind="sft", model=str(model), data=data, out_dir=out_dir, settings=settings,
                        fields=SFT_TRAIN_FIELDS, build_trainer=build, callbacks=callbacks)
