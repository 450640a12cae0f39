"""Our own small training configs. They map onto TRL's configs in `trl_compat` (the only module
that knows TRL's field names), so upstream renames never reach callers.

    SFTSettings(learning_rate=1e-5, epochs=3, lora=LoraSettings(r=16))
    PreferenceSettings(method="dpo", beta=0.1, sft_weight=0.0)

They are named *Settings so that they never read as TRL's own `SFTConfig` / `DPOConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: The paper's LoRA targets: every linear projection of a Llama/Mistral-style block.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                  "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    #: Module names; short forms q,k,v,o,gate,up,down are expanded to q_proj, ...
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS

    def __post_init__(self):
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        self.targets = tuple(_SHORT_TARGETS.get(t, t) for t in self.targets)
        if self.r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainSettings:
    """Options common to every trainer."""

    learning_rate: float = 1e-5
    epochs: float = 1.0
    #: Budget in optimizer steps; overrides `epochs` when > 0 (small selected sets need step budgets).
    max_steps: int = -1
    batch_size: int = 4                      # per device
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = 42
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    lora: LoraSettings | None = None         # None = full fine-tuning
    #: LoRA only: fold the adapter into the base weights in the output (else keep an adapter dir).
    merge: bool = True
    bf16: bool = False
    #: Weights dtype when loading: "auto" = bfloat16 with bf16, else float32.
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    #: Attention kernel when loading ("sdpa", "eager", "flash_attention_2"); None = transformers' default.
    attn_implementation: str | None = None
    #: "none", "tensorboard", "wandb" (or a comma-separated list).
    report_to: str = "none"
    quiet: bool = True                       # no progress bars, warnings only
    logging_steps: int = 10
    #: Checkpoint every N optimizer steps into OUT/checkpoints (resume after a crash).
    save_steps: int = 200
    save_total_limit: int = 1
    keep_checkpoints: bool = False           # delete OUT/checkpoints once DONE is written
    #: Extra keyword arguments passed verbatim to the TRL config (escape hatch; version-specific).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.max_steps is None:
            self.max_steps = -1
        # A run that cannot take a step would still write a DONE model "trained" on nothing.
        if self.max_steps != -1 and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or -1 to train by epochs), got {self.max_steps}")
        if self.max_steps == -1 and not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0 (or set max_steps), got {self.epochs}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("max_length", "save_steps", "logging_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SFTSettings(TrainSettings):
    #: Concatenate examples into max_length blocks (best-fit decreasing; padding-free attention).
    packing: bool = False
    #: Flatten each batch into one sequence without padding (positions restart per example).
    padding_free: bool = False
    #: Loss on the completion only (prompt tokens carry no loss).
    completion_only_loss: bool = True


@dataclass
class PreferenceSettings(TrainSettings):
    method: str = "dpo"                      # "dpo" | "orpo"
    #: DPO: KL strength beta. ORPO: weight lambda of the odds-ratio term.
    beta: float = 0.1
    #: DPO only: weight of an extra SFT (NLL) term on the chosen completion (0 = plain DPO).
    #: ORPO always contains its NLL term with weight 1.
    sft_weight: float = 0.0
    learning_rate: float = 5e-7
    #: DPO only: a different reference model (path); default = the starting model.
    reference: str | None = None
    #: DPO only: compute reference log-probs once before training (saves memory).
    precompute_ref: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.method = self.method.lower()
        if self.method not in ("dpo", "orpo"):
            raise ValueError(f"method must be 'dpo' or 'orpo', got {self.method!r}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be positive, got {self.beta}")
        if not (math.isfinite(self.sft_weight) and self.sft_weight >= 0):
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight}")


@dataclass
class GRPOSettings(TrainSettings):
    """GRPO (TRL GRPOTrainer) on {prompt, pseudo_label} rows. `batch_size` counts COMPLETIONS per
    device and step, so batch_size x grad_accum must be a multiple of `num_generations` (whole
    groups): the default 8 / 8 is one prompt's group per step."""

    #: the `w2s.method.rewards` entry (its name is also the pseudo-label rule's)
    reward: str = "agreement"
    #: the task whose answers the reward grades (a name, or a custom task's spec)
    task: str | dict = "gsm8k"
    #: grade completions in the task's strict answer format, as the test does (False: lenient too)
    strict_answers: bool = True
    learning_rate: float = 1e-6
    batch_size: int = 8
    #: completions sampled per prompt (the group whose rewards are normalised)
    num_generations: int = 8
    max_completion_length: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    #: KL strength to the starting model (0 = no reference model, TRL's default)
    beta: float = 0.0
    #: TRL's loss aggregation ("dapo", "grpo", "dr_grpo", ...)
    loss_type: str = "dapo"
    #: leave completions cut by max_completion_length out of the loss (DAPO)
    mask_truncated_completions: bool = False
    logging_steps: int = 1                   # the per-step reward curve (grpo_log in lineage.json)
    #: generation inside GRPO with vLLM (GPUs): "colocate" (same processes) or "server" (trl vllm-serve)
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3

    def __post_init__(self):
        super().__post_init__()
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO normalises within a group), got {self.num_generations}")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple "
                             f"of num_generations ({self.num_generations}): whole groups per step")
        if self.max_completion_length < 1:
            raise ValueError(f"max_completion_length must be >= 1, got {self.max_completion_length}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0 (GRPO needs different completions), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be colocate or server, got {self.vllm_mode!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")


# Names used in docs/architecture.md.
