"""Training settings: the ONE definition of every training option. The run config's `train:`
sections, `w2s train ...`'s options (names, types, help, defaults) and launched jobs are all
read through these types; `trl_compat` maps them onto TRL's configs.

    SFTSettings(learning_rate=1e-5, num_train_epochs=3, lora=LoraSettings(r=16))
    PreferenceSettings(method="dpo", beta=0.1, sft_weight=0.0)

A setting TRL (or PEFT) also has carries TRL's name (`per_device_train_batch_size`,
`num_train_epochs`, ...); the names w2s used before (`batch_size`, `epochs`, `grad_accum`, ...)
are still accepted as inputs. They are named *Settings so that they never read as TRL's own
`SFTConfig` / `DPOConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from w2s.errors import describe

#: The paper's LoRA targets: every linear projection of a Llama/Mistral-style block.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                  "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


def setting(default: Any, description: str, *, old: tuple[str, ...] = (), **constraints) -> Any:
    """A setting: its default, what it does, and the names w2s gave it before (still accepted)."""
    alias = AliasChoices(*old) if old else None
    return Field(default, description=description, validation_alias=alias, **constraints)


def new_default(base: type[BaseModel], name: str, default: Any) -> Any:
    """`base`'s setting `name` (description, constraints, old names) with another default."""
    return FieldInfo.merge_field_infos(base.model_fields[name], default=default)


def old_names(info: FieldInfo) -> tuple[str, ...]:
    """The names w2s used for a setting before it took TRL's (accepted as inputs)."""
    alias = info.validation_alias
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else ()


class Settings(BaseModel):
    """Unknown keys, non-finite floats and out-of-range values are errors naming the setting."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _one_name_each(cls, values: Any) -> Any:
        # {"batch_size": 4, "per_device_train_batch_size": 8} would keep one of them silently
        if isinstance(values, dict):
            for name, info in cls.model_fields.items():
                given = [n for n in (name, *old_names(info)) if n in values]
                if len(given) > 1:
                    raise ValueError(f"{name} is given twice (as {' and '.join(given)}); keep one")
        return values

    def to_dict(self) -> dict:
        return self.model_dump()


class LoraSettings(Settings):
    """LoRA adapters (PEFT's LoraConfig names)."""

    r: int = setting(16, "LoRA rank.", gt=0)
    lora_alpha: int = setting(32, "LoRA scaling numerator (the update is scaled by lora_alpha / r).",
                              old=("alpha",), gt=0)
    lora_dropout: float = setting(0.05, "Dropout on the LoRA branch.", old=("dropout",), ge=0, lt=1)
    target_modules: tuple[str, ...] = setting(
        DEFAULT_LORA_TARGETS, "Module names to adapt (a list or comma-separated); short forms "
        "q,k,v,o,gate,up,down are expanded to q_proj, ...", old=("targets",), min_length=1)

    @field_validator("target_modules", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(_SHORT_TARGETS.get(t, t) if isinstance(t, str) else t for t in value)
        return value


class TrainSettings(Settings):
    """Options common to every trainer."""

    learning_rate: float = setting(1e-5, "Peak learning rate.", old=("lr",), gt=0)
    max_steps: int = setting(-1, "Budget in optimizer steps; overrides num_train_epochs when set "
                             "(small selected sets need step budgets). -1 = train by epochs.")
    num_train_epochs: float = setting(1.0, "Epochs over the training set (when max_steps is -1).",
                                      old=("epochs",))
    per_device_train_batch_size: int = setting(4, "Batch size per device.", old=("batch_size",), ge=1)
    gradient_accumulation_steps: int = setting(1, "Batches accumulated per optimizer step.",
                                               old=("grad_accum",), ge=1)
    max_length: int = setting(1024, "Max tokens per sequence (prompt + completion).", ge=1)
    seed: int = setting(42, "Seed of initialisation, data order and dropout.")
    warmup_ratio: float = setting(0.0, "Share of the training steps spent warming up the learning rate.",
                                  ge=0, le=1)
    lr_scheduler_type: str = setting("linear", "Learning-rate schedule (transformers' SchedulerType: "
                                     "linear, cosine, constant, ...).", old=("lr_scheduler",))
    weight_decay: float = setting(0.0, "AdamW weight decay.", ge=0)
    lora: LoraSettings | None = setting(None, "LoRA adapters (PEFT); none = full fine-tuning.")
    merge: bool = setting(False, "LoRA only: fold the adapter into the base weights in the output (a full "
                          "copy of the model); default: keep an adapter directory over the base.")
    load_in_4bit: bool = setting(False, "QLoRA: load the base in 4-bit NF4 (bitsandbytes, CUDA only) under the "
                                 "LoRA adapter; needs lora. The adapter is saved as usual and serves on the "
                                 "full-precision base.")
    bf16: bool = setting(False, "bf16 mixed precision (and bf16 weights with dtype auto).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = setting(
        "auto", "Weights dtype when loading: auto = bfloat16 with bf16, else float32.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory).")
    attn_implementation: str | None = setting(
        None, "Attention kernel when loading (sdpa, eager, flash_attention_2); None = transformers' default.")
    report_to: str = setting("none", "Loggers: none, tensorboard, wandb (or a comma-separated list).")
    logging_dir: str | None = setting(None, "TensorBoard logs of this training run (None: inside OUT's "
                                      "staging directory, removed once the model is complete).")
    quiet: bool = setting(True, "No progress bars; warnings only.")
    logging_steps: int = setting(10, "Log the loss every N optimizer steps.", ge=1)
    save_steps: int = setting(200, "Checkpoint every N optimizer steps into OUT/checkpoints "
                              "(resume after a crash).", ge=1)
    save_total_limit: int = setting(1, "Checkpoints kept at once.", ge=1)
    keep_checkpoints: bool = setting(False, "Keep OUT/checkpoints once the model is complete.")
    extra: dict[str, Any] = setting({}, "Extra keyword arguments passed verbatim to TRL's config "
                                    "(escape hatch; version-specific).")

    @model_validator(mode="after")
    def _qlora_needs_lora(self):
        if self.load_in_4bit and self.lora is None:
            raise ValueError("load_in_4bit (QLoRA) trains a LoRA adapter over the 4-bit base: set lora too")
        return self

    @field_validator("max_steps", mode="before")
    @classmethod
    def _steps_budget(cls, value: Any) -> Any:
        # a run that cannot take a step would still write a DONE model "trained" on nothing
        value = -1 if value is None else value
        if isinstance(value, int) and value != -1 and value < 1:
            raise ValueError(f"must be >= 1 (or -1 to train by epochs), got {value}")
        return value

    @field_validator("num_train_epochs")
    @classmethod
    def _epochs(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("max_steps", -1) == -1 and not value > 0:
            raise ValueError(f"must be > 0 (or set max_steps), got {value}")
        return value


class SFTSettings(TrainSettings):
    """Supervised fine-tuning: loss on the completion, EOS appended."""

    packing: bool = setting(False, "Concatenate examples into max_length blocks (best-fit decreasing; "
                            "padding-free attention).")
    padding_free: bool = setting(False, "Flatten each batch into one sequence without padding "
                                 "(positions restart per example).")
    completion_only_loss: bool = setting(True, "Loss on the completion only (prompt tokens carry no loss).")


class PreferenceSettings(TrainSettings):
    """DPO or ORPO on {prompt, chosen, rejected}."""

    method: Literal["dpo", "orpo"] = setting("dpo", "Preference objective: dpo or orpo.")
    beta: float = setting(0.1, "DPO: KL strength beta. ORPO: weight lambda of the odds-ratio term.", gt=0)
    sft_weight: float = setting(0.0, "DPO only: weight of an extra SFT (NLL) term on the chosen "
                                "completion (0 = plain DPO). ORPO always has its NLL term, weight 1.", ge=0)
    learning_rate: float = new_default(TrainSettings, "learning_rate", 5e-7)
    reference: str | None = setting(None, "DPO only: a different reference model (path); "
                                    "None = the starting model.")
    precompute_ref_log_probs: bool = setting(False, "DPO only: compute reference log-probs once before "
                                             "training (saves memory).", old=("precompute_ref",))

    @field_validator("method", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class GRPOSettings(TrainSettings):
    """GRPO (TRL GRPOTrainer) on {prompt, pseudo_label} rows. per_device_train_batch_size counts
    COMPLETIONS per device and step, so it times gradient_accumulation_steps must be a multiple of
    num_generations (whole groups): the default 8 / 8 is one prompt's group per step."""

    reward: str = setting("agreement", "The w2s.method.rewards entry (its name is also the "
                          "pseudo-label rule's).")
    task: str | dict[str, Any] = setting("gsm8k", "The task whose answers the reward grades "
                                         "(a name, or a custom task's spec).")
    strict_answers: bool = setting(True, "Grade completions in the task's strict answer format, as the "
                                   "test does (False: lenient too).")
    learning_rate: float = new_default(TrainSettings, "learning_rate", 1e-6)
    per_device_train_batch_size: int = new_default(TrainSettings, "per_device_train_batch_size", 8)
    num_generations: int = setting(8, "Completions sampled per prompt (the group whose rewards are "
                                   "normalised).", ge=2, validate_default=True)
    max_completion_length: int = setting(256, "Max tokens per sampled completion.", ge=1)
    temperature: float = setting(1.0, "Sampling temperature (> 0: GRPO needs different completions).", gt=0)
    top_p: float = setting(1.0, "Nucleus sampling mass.", gt=0, le=1)
    beta: float = setting(0.0, "KL strength to the starting model (0 = no reference model, TRL's default).",
                          ge=0)
    loss_type: str = setting("dapo", "TRL's loss aggregation (dapo, grpo, dr_grpo, ...).")
    mask_truncated_completions: bool = setting(False, "Leave completions cut by max_completion_length "
                                               "out of the loss (DAPO).")
    drop_zero_std: bool = setting(False, "Leave completions whose advantage is 0 (a group whose rewards are all "
                                  "equal) out of the loss and its token count (DAPO's dynamic sampling, "
                                  "without oversampling; w2s.training.trl_grpo).")
    logging_steps: int = new_default(TrainSettings, "logging_steps", 1)  # the per-step reward curve
    use_vllm: bool = setting(False, "Generate inside GRPO with vLLM (GPUs).")
    vllm_mode: Literal["colocate", "server"] = setting(
        "colocate", "vLLM in the training processes (colocate) or a `trl vllm-serve` server.")
    vllm_gpu_memory_utilization: float = setting(0.3, "colocate: share of GPU memory vLLM takes.", gt=0, le=1)

    @field_validator("num_generations")
    @classmethod
    def _whole_groups(cls, value: int, info: ValidationInfo) -> int:
        batch = info.data.get("per_device_train_batch_size", 1) * info.data.get("gradient_accumulation_steps", 1)
        if batch % value:
            raise ValueError(f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be "
                             f"a multiple of num_generations ({value}): whole groups per step")
        return value


def validate_settings(cls: type[Settings], values: Any, key: str) -> Settings:
    """`values` (a config section) as `cls`; a ValueError naming the full key of the first bad
    setting as the user wrote it: `strong.train.learning_rate: ...`."""
    if not isinstance(values, dict):
        raise ValueError(f"{key}: expected a mapping of settings, got {type(values).__name__}")
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join([key, *(str(p) for p in first["loc"])])
        raise ValueError(f"{where}: {describe_error(first, cls)}") from None


def describe_error(error: dict, cls: type[Settings]) -> str:
    """One pydantic error as a sentence (w2s.errors: the run config's words), an unknown key
    matched against the settings `cls` (or its nested LoRA settings) knows, old names included."""
    owner = LoraSettings if error["loc"][:1] == ("lora",) else cls
    aliases = [old for info in owner.model_fields.values() for old in old_names(info)]
    return describe(error, known=sorted(owner.model_fields), aliases=aliases)
