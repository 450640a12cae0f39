"""The run configuration: YAML -> typed, validated sections (pydantic), errors that name the key.

Each default is written once, here; unknown keys are errors naming the nearest valid one;
ranges are Field constraints (with the reason in the message); values that multiply work
(iterations, rounds, samples, k) have upper bounds, so a typo cannot exhaust the machine before
the first stage. Loading is fast (no model imports): a bad config fails in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from w2s.hub_spec import hub_spec_from_mapping
from w2s.pipeline.config_checks import check_semantics
from w2s.pipeline.config_errors import ConfigError, translate
from w2s.pipeline.safe_yaml import load_yaml


def _yaml_float(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads `3e-4` as a string and `3.0e-4` as a float: accept both."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


Number = Annotated[float, BeforeValidator(_yaml_float)]


def F(default: Any = ..., why: str | None = None, **constraints) -> Any:
    """A field with range constraints and, optionally, the reason shown when a value breaks them."""
    return Field(default, json_schema_extra={"why": why} if why else None, **constraints)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=False)


def _hub_mapping(value: Any) -> Any:
    return hub_spec_from_mapping(value) if isinstance(value, dict) else value


#: a file, a `datasets` directory, `hf:NAME[:CONFIG][@SPLIT]`, or {hub, config, split, fields}
DataSource = Annotated[str, BeforeValidator(_hub_mapping)]


class DataSection(Section):
    gold: DataSource               #: labeled set: trains the weak model (questions + gold solutions)
    unlabeled: DataSource          #: questions the strong model learns from (answers never shown to it)
    test: DataSource               #: scores everyone
    #: gold for `unlabeled`: diagnostics and the gold-SFT ceiling only (default: its own answers)
    hidden_gold: Optional[DataSource] = None
    #: labeled dev split for every choice of settings: each model is also scored on it (greedy)
    dev: Optional[DataSource] = None
    limit_gold: Optional[int] = F(None, "leave it out for every row", ge=1)
    limit_unlabeled: Optional[int] = F(None, "leave it out for every row", ge=1)
    limit_test: Optional[int] = F(None, "leave it out for every row", ge=1)
    limit_dev: Optional[int] = F(None, "leave it out for every row", ge=1)


def _train_dict(kind: str):
    """A `train:` mapping checked against w2s.training's settings of `kind` (validated in full in
    RunConfig's model validator, where the dotted key is known)."""
    return Field(default_factory=dict, json_schema_extra={"settings": kind})


class WeakSection(Section):
    model: str
    finetune: bool = True          #: fine-tune on data.gold first (the paper's setting)
    train: dict = _train_dict("sft")
    #: generation backend for the weak model's stages (default: generation.backend)
    backend: Optional[Literal["hf", "vllm", "openai"]] = None


class StrongSection(Section):
    model: str
    train: dict = _train_dict("sft")   #: every strong SFT (Stage I, baselines)
    lora: Optional[dict] = Field(None, json_schema_extra={"settings": "lora"})  #: None = full fine-tuning


class GenerationSection(Section):
    backend: Literal["hf", "vllm", "openai"] = "hf"
    max_new_tokens: int = F(256, ge=1, le=131072)
    options: dict = Field(default_factory=dict)  #: backend options: batch_size, dtype, base_url, ...

    @field_validator("options")
    @classmethod
    def _counts_are_positive(cls, options: dict) -> dict:
        for k in ("batch_size", "max_batch_tokens", "chunk_size", "concurrency", "tensor_parallel_size",
                  "max_model_len", "data_parallel"):
            v = options.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f".{k}: must be an integer >= 1, got {v!r}")
        return options


class Stage1Section(Section):
    iterations: int = F(1, ge=1, le=20)
    shots: int = F(4, "the strong model answers in-context", ge=1, le=64)
    variants: list[Literal["weak", "icl", "hybrid"]] = Field(default_factory=lambda: ["weak", "icl", "hybrid"])
    #: which last-iteration model is M_plus (Stage II starts from it): the paper's hybrid, or the
    #: variant a dev split chose (docs/toy_world.md)
    m_plus: Literal["hybrid", "weak", "icl"] = "hybrid"
    selection: str = "consistency"  #: a w2s.method.registry.SELECTION entry (or package.module:object)
    #: the strong model's in-context samples per question, for rules that need them (`confidence`)
    confidence_samples: int = F(4, "a vote share needs several samples", ge=2, le=1000)
    confidence_temperature: Number = F(1.0, "samples at temperature 0 are copies of one greedy answer", gt=0)
    confidence_threshold: Number = F(0.75, ge=0, le=1)


class Stage2Section(Section):
    enabled: bool = True
    samples: int = F(10, "a majority vote needs several samples", ge=2, le=1000)
    temperature: Number = F(1.0, "samples at temperature 0 are copies of one greedy answer: no vote", gt=0)
    top_p: Number = F(1.0, gt=0, le=1)
    min_confidence: Number = F(0.6, ge=0, le=1)
    flip_confidence: Number = F(0.8, ge=0, le=1)
    max_pairs: int = F(1, ge=1, le=100)
    pairs: str = "paper"            #: a w2s.method.registry.PAIRS entry (or package.module:object)
    #: `agreement`: samples that must reach a weak / in-context answer, and which wins when both do
    min_support: int = F(3, ge=1)
    prefer: Literal["weak", "icl", "most_votes"] = "icl"
    #: `scpo`: the least vote margin (most-voted minus least-voted share) a pair needs
    min_margin: Number = F(0.0, ge=0, le=1)
    method: Literal["dpo", "orpo", "both"] = "dpo"
    train: dict = _train_dict("preference")


class Stage3Section(Section):
    """Label-free RL (GRPO) rewarded by pseudo-labels from the method's own agreement signal."""

    enabled: bool = False
    #: the starting policy; None = the Stage II model when Stage II runs (DPO if it trains both), else M_plus
    start: Optional[Literal["m_plus", "m_pro_dpo", "m_pro_orpo"]] = None
    reward: str = "agreement"       #: a w2s.method.registry.REWARDS entry; it names its pseudo-label rule
    samples: int = F(8, "pseudo-labels are voted from several samples", ge=2, le=1000)
    temperature: Number = F(1.0, "samples at temperature 0 are copies", gt=0)
    min_support: int = F(3, ge=1)   #: agreement: samples that must give the weak / in-context answer
    prefer: Literal["weak", "icl", "most_votes"] = "weak"
    min_confidence: Number = F(0.6, ge=0, le=1)   #: majority: the majority's share of the samples
    rounds: int = F(2, ge=1, le=100)  #: sample -> pseudo-label -> GRPO, each from the previous policy
    max_questions: Optional[int] = F(None, "leave it out for every question", ge=1)
    train: dict = _train_dict("grpo")


class TrackingSection(Section):
    """Where the run's numbers go besides metrics.json (w2s.tracking)."""

    backend: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    project: Optional[str] = F(None, max_length=200)   #: wandb / trackio project (default "w2s")
    run_name: Optional[str] = F(None, max_length=200)  #: default: the config's name, else the run directory's
    group: Optional[str] = F(None, max_length=200)     #: wandb / trackio group (e.g. one per sweep)


class HubSection(Section):
    """Push the run's models (adapters or weights, with a card: lineage and metrics) and its
    datasets to the Hugging Face Hub once the report is written (w2s.hub)."""

    push: bool = False
    prefix: Optional[str] = F(None, max_length=96)  #: "ORG/NAME": repos PREFIX-m-plus, ..., PREFIX-data
    private: bool = True


class EvalSection(Section):
    n: int = F(10, "0 = greedy only", ge=0, le=1000)  #: samples per test question (pass@k / maj@k)
    temperature: Number = F(1.0, ge=0)
    #: samples for the intermediate Stage I models (all but M_plus); None = n
    intermediate_n: Optional[int] = F(None, "0 = greedy only; leave it out for eval.n", ge=0, le=1000)
    #: false while choosing settings on the dev split: no model is scored on test
    test: bool = True
    #: M_plus sampled on the dev split at each temperature (eval.n samples): maj@k and avg@k against
    #: its greedy accuracy, i.e. whether voting beats greedy decoding here (the premise of Stage II's
    #: pairs and the majority rewards). Empty = none; needs a dev split and eval.n > 0.
    sweep_temperatures: list[Annotated[Number, Field(gt=0, le=10)]] = Field(
        default_factory=lambda: [0.3, 0.5, 0.7, 1.0], max_length=20)


Baseline = Literal["weak", "strong_fewshot", "full_weak", "gold_sft"]


class RunConfig(Section):
    task: str | dict
    data: DataSection
    weak: WeakSection
    strong: StrongSection
    generation: GenerationSection = Field(default_factory=GenerationSection)
    stage1: Stage1Section = Field(default_factory=Stage1Section)
    stage2: Stage2Section = Field(default_factory=Stage2Section)
    stage3: Stage3Section = Field(default_factory=Stage3Section)
    baselines: list[Baseline] = Field(default_factory=lambda: ["weak", "strong_fewshot", "full_weak", "gold_sft"])
    eval: EvalSection = Field(default_factory=EvalSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    hub: HubSection = Field(default_factory=HubSection)
    seed: int = F(0, ge=0)
    name: Optional[str] = F(None, max_length=200)
    #: torch CPU threads (None = torch's default, 0 = 2 on an idle machine and 1 on a busy one)
    threads: Optional[int] = F(None, "0 = automatic", ge=0, le=1024)
    #: run training stages under this launcher in a subprocess (multi-GPU), e.g.
    #: "accelerate launch --config_file examples/accelerate/ddp.yaml". None = in-process.
    launcher: Optional[str] = None
    #: extra pipeline parts ("package.module:function"), added after the method's own
    parts: list[str] = Field(default_factory=list)


BASELINES = ("weak", "strong_fewshot", "full_weak", "gold_sft")


def to_dict(cfg: RunConfig) -> dict:
    return cfg.model_dump(mode="json")


# ---- loading ---------------------------------------------------------------------
def load_config(path: str | os.PathLike, overrides: dict | None = None) -> RunConfig:
    """Load and validate a YAML run config. Relative data/model paths are resolved against
    the config file's directory first, then the current directory."""
    raw, base_dir = load_raw(path)
    try:
        return config_from_dict(raw, base_dir=base_dir, overrides=overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None  # the key, and in which file


def load_raw(path: str | os.PathLike) -> tuple[dict, Path]:
    """A config file's mapping (bounded YAML) and the directory its relative paths start from."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw, path.parent


def config_from_dict(raw: dict, base_dir: Path | str = ".", overrides: dict | None = None) -> RunConfig:
    raw = deep_merge(raw, overrides or {})
    base_dir = Path(base_dir)
    for section, keys in (("data", ("gold", "unlabeled", "test", "hidden_gold", "dev")),
                          ("weak", ("model",)), ("strong", ("model",))):
        sec = raw.get(section)
        if isinstance(sec, dict):
            for k in keys:
                if isinstance(sec.get(k), str):
                    sec[k] = _resolve(sec[k], base_dir)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(translate(e, RunConfig)) from None
    check_semantics(cfg)
    return cfg


def _resolve(p: str, base_dir: Path) -> str:
    if p.startswith("hf:") or os.path.isabs(p):
        return p
    expanded = os.path.expanduser(p)
    if expanded != p:
        return expanded
    for cand in (base_dir / p, Path(p)):
        if cand.exists():
            return str(cand.resolve())
    if p.startswith("."):
        return str((base_dir / p).resolve())
    return p  # a hub name, or a missing file reported by validation


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """`stage2.min_confidence=0.7` -> {"stage2": {"min_confidence": 0.7}}; the value is read by the
    same bounded YAML loader as a config file (no tags, no alias bombs)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts) or len(parts) > 8:
        raise ConfigError(f"override {text!r}: expected a dotted key such as stage2.min_confidence")
    node: Any = load_yaml(value, f"--set {key.strip()}")
    for part in reversed(parts):
        node = {part: node}
    return node

