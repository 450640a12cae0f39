"""Training: SFT, DPO, ORPO and GRPO on TRL + PEFT behind small pydantic settings.

    from w2s.training import SFTSettings, PreferenceSettings, LoraSettings, train_sft, train_preference
    out = train_sft("models/weak", "gold.jsonl", "runs/weak-sft", SFTSettings(num_train_epochs=2, lora=LoraSettings()))
    is_complete(out)  # True: model + tokenizer + lineage.json + DONE

Only `w2s.training.trl_compat` knows TRL's version-specific API.
"""

from w2s.training.settings import (
    DEFAULT_LORA_TARGETS,
    GRPOSettings,
    LoraSettings,
    PreferenceSettings,
    SFTSettings,
    TrainSettings,
)
from w2s.training.lineage import is_complete, read_lineage
from w2s.training.outdir import untrained_copy
from w2s.training.merge import merge_adapter
from w2s.training.preference import train_preference
from w2s.training.sft import train_sft

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "GRPOSettings",
    "LoraSettings",
    "PreferenceSettings",
    "SFTSettings",
    "TrainSettings",
    "is_complete",
    "merge_adapter",
    "read_lineage",
    "train_preference",
    "train_sft",
    "untrained_copy",
]
