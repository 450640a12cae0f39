"""The ONE module that knows TRL's (and PEFT's) version-specific API (with `trl_grpo`, which
reaches inside a built GRPOTrainer).

Everything else in `w2s.training` speaks our settings (`settings.py`), which carry TRL's names
wherever TRL has the setting; this module passes those through, maps the few w2s-only ones
(`W2S_ONLY`, `_renamed`) onto TRL's configs and builds the trainers. When TRL moves or renames something, this is the
file to change (and `tests/test_training*.py` is what tells you).

Known facts about the supported range (trl>=1.0,<2):
- `SFTConfig`: `max_length`, `completion_only_loss`, `packing` (+ `packing_strategy`),
  `padding_free`; prompt/completion datasets get EOS appended to the completion.
  TRL's defaults differ from transformers': gradient_checkpointing=True, bf16=True; we always
  set both explicitly.
- `DPOTrainer(processing_class=...)`; `loss_type` is a list, with `loss_weights`;
  an SFT term is `loss_type=["sigmoid", "sft"]`. With a PEFT model and no `ref_model`, the
  reference pass runs with the adapter disabled.
- `GRPOConfig`/`GRPOTrainer(reward_funcs=..., processing_class=...)`; `per_device_train_batch_size`
  counts completions; extra dataset columns reach reward functions as keyword lists (with
  `remove_unused_columns=False`); generate() is called without the tokenizer (stop strings).
- ORPO left the top level in TRL 1.x and lives in `trl.experimental.orpo`; older releases
  export `trl.ORPOTrainer`. If neither exists, `w2s.training.orpo_fallback` implements the
  published loss on top of transformers' Trainer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shutil
import warnings
from typing import Any, Sequence

log = logging.getLogger("w2s.training")


def versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - optional
            pass
    return out


def _filter_fields(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields `cls` knows; drop the rest with a warning (a setting the user gave
    that this TRL version does not have must not vanish silently). Insulates us from removals."""
    names = {f.name for f in dataclasses.fields(cls)}
    dropped = sorted(k for k in kwargs if k not in names)
    if dropped:
        log.warning("this TRL version's %s has no field(s) %s: those settings are ignored", cls.__name__,
                    ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in names}


def _renamed(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Settings that transformers 5 moved: `warmup_ratio` is now a float `warmup_steps` (a value
    in [0, 1) is a ratio of the training steps), and the log directory comes from the
    environment (`log_dir`). Without this the warmup was dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = dict(kwargs)
    if "warmup_ratio" in kwargs and "warmup_ratio" not in names and "warmup_steps" in names:
        ratio = kwargs.pop("warmup_ratio")
        if ratio:
            kwargs["warmup_steps"] = min(float(ratio), 0.999999)  # 1.0 would read as one step
    if "logging_dir" not in names:
        kwargs.pop("logging_dir", None)
    return kwargs


def _report_to(value: str | Sequence[str] | None) -> list[str] | str:
    if value is None:
        return "none"
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    items = [v for v in items if v != "none"]
    return items or "none"


def has_accelerator() -> bool:
    """A GPU-like device torch can train on (CUDA, ROCm, MPS, XPU)."""
    import torch

    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


#: Settings that are w2s's own (TRL has no such field, or it means something else there); every
#: other setting carries its TRL name and is passed to TRL's config as it is.
W2S_ONLY = frozenset({"lora", "merge", "load_in_4bit", "dtype", "attn_implementation", "quiet", "keep_checkpoints", "extra",
                      "report_to", "logging_dir", "method", "sft_weight", "reference", "reward", "task", "strict_answers",
                      "drop_zero_std"})
#: Settings one trainer does not use although TRL's config of another has them.
_UNUSED = {"orpo": {"precompute_ref_log_probs"},  # ORPO has no reference model
           "grpo": {"max_length"}}                # GRPO: only w2s's bound on prompt characters


def _trl_named(settings, trainer: str) -> dict[str, Any]:
    skip = W2S_ONLY | _UNUSED.get(trainer, set())
    return {name: getattr(settings, name) for name in type(settings).model_fields if name not in skip}


def _common_kwargs(settings, output_dir: str, trainer: str) -> dict[str, Any]:
    """TRL's config arguments: the TRL-named settings, plus what w2s decides for every run."""
    kw: dict[str, Any] = dict(
        _trl_named(settings, trainer),
        output_dir=output_dir,
        data_seed=settings.seed,
        fp16=False,
        report_to=_report_to(settings.report_to),
        # transformers<5: OUT/logs beside OUT/checkpoints (deleted after success); 5.x: see log_dir()
        logging_dir=os.path.join(os.path.dirname(os.path.abspath(output_dir)), "logs"),
        save_strategy="steps",
        disable_tqdm=bool(settings.quiet),
        log_level="warning" if settings.quiet else "passive",
        dataloader_num_workers=0,
        dataloader_pin_memory=has_accelerator(),
        # No GPU: use_cpu makes a multi-process launch (torchrun / accelerate launch) run DDP over gloo
        # instead of N independent single-process runs.
        use_cpu=not has_accelerator(),
        ddp_find_unused_parameters=False,
        eval_strategy="no",
        push_to_hub=False,
    )
    if settings.quiet:
        kw["log_level_replica"] = "error"
    return kw


def _config(cls, kwargs: dict[str, Any], extra: dict[str, Any]):
    kwargs = _renamed(cls, kwargs)
    merged = {**_filter_fields(cls, kwargs), **(extra or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**merged)


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------
def lora_config(lora) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                      target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")


# ---------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------
def sft_config(settings, output_dir: str):
    from trl import SFTConfig as TRLSFTConfig

    kw = _common_kwargs(settings, output_dir, "sft")
    kw["dataset_num_proc"] = None
    if settings.packing:
        kw["packing_strategy"] = "bfd"  # best-fit decreasing, padding-free attention, no cross-attention
    if settings.padding_free and not settings.packing:
        # TRL refuses padding_free + max_length without packing: we truncate ourselves (sft.py).
        kw["max_length"] = None
    return _config(TRLSFTConfig, kw, settings.extra)


def _plain_loss_sft_trainer():
    """SFTTrainer whose loss is the model's own cross-entropy (transformers' `Trainer.compute_loss`).

    TRL>=1.16 computes the SFT loss through its fused LM head: a chunked autograd function that
    recomputes the head's projection in the backward pass and adds per-token entropy and top-1
    metrics. Off Triton devices it scores every position (prompt and padding too), so on CPU it
    saves no memory and costs the toy weak model ~60 % of its step (docs/toy_world.md, "Speed").
    Same loss (summed over completion tokens / num_items_in_batch), same optimizer, same TRL
    data path; only TRL's entropy / mean_token_accuracy logs are gone."""
    from transformers import Trainer
    from trl import SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {**inputs, "use_cache": False}  # no KV cache built in a training forward
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PlainLossSFTTrainer


def sft_trainer(model, tokenizer, dataset, settings, output_dir: str, peft_config=None, callbacks=()):
    from trl import SFTTrainer

    args = sft_config(settings, output_dir)
    # On a GPU TRL's fused head avoids materialising (batch, length, vocab) logits: keep it there.
    plain = not has_accelerator() and getattr(args, "loss_type", "nll") == "nll"
    cls = _plain_loss_sft_trainer() if plain else SFTTrainer
    return cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
               peft_config=peft_config, callbacks=list(callbacks) or None)


def trl_default_sft_trainer(model, tokenizer, dataset, output_dir: str, **overrides):
    """SFTTrainer with TRL's own defaults (for the benchmark's baseline)."""
    from trl import SFTConfig as TRLSFTConfig, SFTTrainer

    kw = dict(output_dir=output_dir, report_to="none", disable_tqdm=True, save_strategy="no")
    kw.update(overrides)
    args = _config(TRLSFTConfig, kw, {})
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


# ---------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------
def dpo_config(settings, output_dir: str):
    from trl import DPOConfig

    kw = _common_kwargs(settings, output_dir, "dpo")
    loss_type, weights = ["sigmoid"], [1.0]
    if settings.sft_weight > 0:
        loss_type, weights = ["sigmoid", "sft"], [1.0, float(settings.sft_weight)]
    kw.update(loss_type=loss_type, loss_weights=weights, disable_dropout=True)
    return _config(DPOConfig, kw, settings.extra)


def dpo_trainer(model, ref_model, tokenizer, dataset, settings, output_dir: str, peft_config=None,
                callbacks=()):
    """`ref_model=None` with a `peft_config` = reference is the model with the adapter disabled."""
    from trl import DPOTrainer

    args = dpo_config(settings, output_dir)
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                      processing_class=tokenizer, peft_config=peft_config,
                      callbacks=list(callbacks) or None)


# ---------------------------------------------------------------------------------------------
# ORPO
# ---------------------------------------------------------------------------------------------
def _orpo_classes():
    """(ORPOConfig, ORPOTrainer, where) from wherever the installed TRL keeps them, or None."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    for mod in ("trl.experimental.orpo", "trl"):
        try:
            m = importlib.import_module(mod)
            return m.ORPOConfig, m.ORPOTrainer, mod
        except (ImportError, AttributeError):
            continue
    return None


def orpo_source() -> str:
    found = _orpo_classes()
    return found[2] if found else "w2s.training.orpo_fallback"


def orpo_trainer(model, tokenizer, dataset, settings, output_dir: str, peft_config=None, callbacks=()):
    found = _orpo_classes()
    kw = _common_kwargs(settings, output_dir, "orpo")
    kw.update(disable_dropout=True, remove_unused_columns=False)
    if found is None:
        from w2s.training.orpo_fallback import ORPOFallbackTrainer, orpo_fallback_args

        args = orpo_fallback_args(kw, settings.extra)
        return ORPOFallbackTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   peft_config=peft_config, callbacks=list(callbacks) or None)
    ORPOConfig, ORPOTrainer, _ = found
    args = _config(ORPOConfig, kw, settings.extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ORPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                           peft_config=peft_config, callbacks=list(callbacks) or None)


# ---------------------------------------------------------------------------------------------
# Misc helpers that depend on transformers' Trainer internals
# ---------------------------------------------------------------------------------------------
def _checkpoint_complete(path: str) -> bool:
    # the Trainer writes trainer_state.json last: a checkpoint without a readable one was cut by a crash
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            json.load(f)
        return True
    except (OSError, ValueError):
        return False


def last_checkpoint(checkpoint_dir: str, drop_partial: bool = False) -> str | None:
    """The newest COMPLETE checkpoint in `checkpoint_dir` (a kill -9 during a save leaves a partial
    one that transformers would pick and fail on); `drop_partial` deletes the partial ones."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not os.path.isdir(checkpoint_dir):
        return None
    found = []
    for name in os.listdir(checkpoint_dir):
        path = os.path.join(checkpoint_dir, name)
        step = name[len(PREFIX_CHECKPOINT_DIR) + 1:]
        if not (name.startswith(PREFIX_CHECKPOINT_DIR + "-") and step.isdigit() and os.path.isdir(path)):
            continue
        if _checkpoint_complete(path):
            found.append((int(step), path))
        elif drop_partial:
            shutil.rmtree(path, ignore_errors=True)
    return max(found)[1] if found else None


@contextlib.contextmanager
def log_dir(path: str):
    """Send TensorBoard logs to `path` (transformers 5 reads TENSORBOARD_LOGGING_DIR, else
    writes under output_dir, i.e. OUT/checkpoints, which is deleted after success)."""
    old = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if old is None:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)


def silence(trainer) -> None:
    """No per-step log printing (the Trainer prints logs when tqdm is off)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def is_main_process(trainer) -> bool:
    return bool(trainer.is_world_process_zero())


def wait_for_everyone(trainer) -> None:
    trainer.accelerator.wait_for_everyone()
