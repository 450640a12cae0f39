"""Preference optimisation from a Stage I model: DPO (TRL DPOTrainer) or ORPO.

Reference model, per case:
- DPO, full fine-tuning: a frozen copy of the starting model (or `settings.reference`).
- DPO, LoRA from a full model: the starting model is the base the new adapter sits on, so the
  reference pass is the same network with the adapter disabled (no second copy in memory).
- DPO, LoRA from an adapter (M_plus of a run that keeps adapters): that adapter trains on, and
  TRL copies it as a frozen "ref" adapter: the reference is M_plus, not the bare base.
- ORPO: no reference model (the odds-ratio term is reference-free).
`lineage.json` records which model was the reference, and how.
"""

from __future__ import annotations

import os
from pathlib import Path

from w2s.models import is_adapter_dir
from w2s.training import trl_compat
from w2s.training.run import load_model, run_training
from w2s.training.settings import PreferenceSettings

PREFERENCE_TRAIN_FIELDS = ("prompt", "chosen", "rejected")


def _dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict({k: [r[k] for r in records] for k in PREFERENCE_TRAIN_FIELDS})


def reference_description(model: str, settings: PreferenceSettings) -> dict:
    if settings.method == "orpo":
        return {"model": None, "how": "none (ORPO is reference-free)"}
    ref = settings.reference or str(model)
    p = Path(ref)
    ref = str(p.resolve()) if p.exists() else ref
    if settings.lora is not None and settings.reference is None and is_adapter_dir(model):
        return {"model": ref, "how": "frozen copy of the starting adapter (TRL's 'ref' adapter)"}
    if settings.lora is not None and settings.reference is None:
        return {"model": ref, "how": "adapter disabled (LoRA on the starting model)"}
    return {"model": ref, "how": "frozen copy" + ("" if settings.reference is None else " of settings.reference")}


def train_preference(model: str | os.PathLike, data, out_dir: str | os.PathLike,
                     config: PreferenceSettings | None = None, *, callbacks=()) -> Path:
    """DPO or ORPO of `model` (typically M_plus) on preference records
    ({prompt, chosen, rejected}); writes a loadable model dir with lineage.json and DONE."""
    settings = config or PreferenceSettings()
    if not isinstance(settings, PreferenceSettings):
        raise TypeError(f"config must be PreferenceSettings, got {type(settings).__name__}")
    model = str(model)

    def build(model_obj, tokenizer, records, ckpt_dir, peft_config, cbs):
        ds = _dataset(records)
        if settings.method == "orpo":
            return trl_compat.orpo_trainer(model_obj, tokenizer, ds, settings, ckpt_dir,
                                           peft_config=peft_config, callbacks=cbs)
        ref_model = None
        if settings.reference is not None or (peft_config is None and settings.lora is None):
            ref_model = load_model(settings.reference or model, settings)
            ref_model.eval()
            ref_model.requires_grad_(False)
        return trl_compat.dpo_trainer(model_obj, ref_model, tokenizer, ds, settings, ckpt_dir,
                                      peft_config=peft_config, callbacks=cbs)

    def extra(trainer) -> dict:
        out = {"method": settings.method, "reference": reference_description(model, settings)}
        if settings.method == "orpo":
            out["orpo_implementation"] = trl_compat.orpo_source()
        return out

    return run_training(kind=settings.method, model=model, data=data, out_dir=out_dir, settings=settings,
                        fields=PREFERENCE_TRAIN_FIELDS, build_trainer=build, extra_lineage=extra,
                        callbacks=callbacks)
