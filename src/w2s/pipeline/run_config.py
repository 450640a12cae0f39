"""The run configuration: YAML -> validated dataclasses, errors that name the key.

Only structure and types are checked here (fast, no heavy imports): a bad config fails in
well under a second. Training settings are passed through to `w2s.training` dataclasses,
whose field names are validated when the config loads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the key (dotted path) or the file."""


@dataclass
class DataSection:
    gold: str                      # labeled set: trains the weak model (questions + gold solutions)
    unlabeled: str                 # questions the strong model learns from (answers never shown to it)
    test: str                      # scores everyone
    hidden_gold: str | None = None  # gold for `unlabeled`, diagnostics and the gold-SFT ceiling only;
    #                                 defaults to the answers/solutions inside `unlabeled` if present
    #: labeled dev split, for every choice of settings: each model is also scored on it (greedy),
    #: so thresholds, learning rates and which Stage I model is M_plus are chosen without test
    dev: str | None = None
    limit_gold: int | None = None   # slices, for quick runs
    limit_unlabeled: int | None = None
    limit_test: int | None = None
    limit_dev: int | None = None


@dataclass
class WeakSection:
    model: str
    finetune: bool = True           # fine-tune on data.gold first (the paper's setting)
    train: dict = field(default_factory=dict)   # -> w2s.training SFT settings
    # generation backend for the weak model's stages (default: generation.backend); e.g. hf for a
    # weak model whose attention vLLM's CPU build has no kernel for
    backend: Optional[Literal["hf", "vllm", "openai"]] = None


@dataclass
class StrongSection:
    model: str
    train: dict = field(default_factory=dict)   # SFT settings for every strong SFT (Stage I, baselines)
    lora: dict | None = None                    # -> LoRA settings; None = full fine-tuning


@dataclass
class GenerationSection:
    backend: Literal["hf", "vllm", "openai"] = "hf"
    max_new_tokens: int = 256
    options: dict = field(default_factory=dict)  # backend options: batch_size, dtype, base_url, ...


@dataclass
class Stage1Section:
    iterations: int = 1
    shots: int = 4
    variants: list[str] = field(default_factory=lambda: ["weak", "icl", "hybrid"])
    #: which last-iteration model is M_plus (Stage II starts from it): the paper's hybrid, or the
    #: variant a dev split chose (docs/toy_world.md)
    m_plus: Literal["hybrid", "weak", "icl"] = "hybrid"
    selection: str = "consistency"  # a registered Stage I strategy (w2s.method.registry.SELECTION)
    # `confidence` only: the strong model's in-context samples per question (an extra generation
    # stage), their temperature, and the share of them that must reach its greedy answer
    confidence_samples: int = 4
    confidence_temperature: float = 1.0
    confidence_threshold: float = 0.75


@dataclass
class Stage2Section:
    enabled: bool = True
    samples: int = 10
    temperature: float = 1.0
    top_p: float = 1.0
    min_confidence: float = 0.6
    flip_confidence: float = 0.8
    max_pairs: int = 1
    pairs: str = "paper"            # a registered pair strategy (w2s.method.registry.PAIRS)
    # `agreement` only: samples that must reach a weak / in-context answer for it to be the label,
    # and which one wins when both qualify (weak | icl | most_votes)
    min_support: int = 3
    prefer: Literal["weak", "icl", "most_votes"] = "icl"
    method: Literal["dpo", "orpo", "both"] = "dpo"
    train: dict = field(default_factory=dict)   # -> w2s.training preference settings (beta, lr, ...)


@dataclass
class Stage3Section:
    """Label-free RL (GRPO) rewarded by pseudo-labels from the method's own agreement signal."""

    enabled: bool = False
    #: the starting policy; None = the Stage II model when Stage II runs (DPO if it trains both), else M_plus
    start: Optional[Literal["m_plus", "m_pro_dpo", "m_pro_orpo"]] = None
    reward: str = "agreement"       # a registered reward (w2s.method.registry.REWARDS) and its pseudo-label rule
    samples: int = 8                # policy samples per question that the pseudo-labels are voted from
    temperature: float = 1.0
    min_support: int = 3            # agreement: samples that must give the weak / in-context answer
    prefer: Literal["weak", "icl", "most_votes"] = "weak"   # agreement: when both answers qualify
    min_confidence: float = 0.6     # majority: the majority's share of the samples
    rounds: int = 2                 # sample -> pseudo-label -> GRPO, each from the previous round's policy
    #: unlabeled questions per round (drawn with a seeded generator); None = all
    max_questions: int | None = None
    train: dict = field(default_factory=dict)   # -> w2s.training GRPO settings (lr, max_steps, num_generations, ...)


@dataclass
class EvalSection:
    n: int = 10                     # samples per test question for pass@k / maj@k (0 = greedy only)
    temperature: float = 1.0
    #: samples for the intermediate Stage I models (all but M_plus); None = n. Sampling dominates
    #: evaluation time, and those rows are read for their greedy accuracy.
    intermediate_n: int | None = None
    #: false while choosing settings on the dev split: no model is scored on test (read test once
    #: per final setting)
    test: bool = True


@dataclass
class RunConfig:
    task: str | dict
    data: DataSection
    weak: WeakSection
    strong: StrongSection
    generation: GenerationSection = field(default_factory=GenerationSection)
    stage1: Stage1Section = field(default_factory=Stage1Section)
    stage2: Stage2Section = field(default_factory=Stage2Section)
    stage3: Stage3Section = field(default_factory=Stage3Section)
    baselines: list[str] = field(default_factory=lambda: ["weak", "strong_fewshot", "full_weak", "gold_sft"])
    eval: EvalSection = field(default_factory=EvalSection)
    seed: int = 0
    name: str | None = None
    #: torch CPU threads (None = torch's default, 0 = 2 on an idle machine and 1 on a busy one).
    #: On a busy machine extra OpenMP threads can slow small models down by orders of magnitude.
    threads: int | None = None
    #: Run training stages under this launcher in a subprocess (multi-GPU), e.g.
    #: "accelerate launch --config_file examples/accelerate/ddp.yaml". None = in-process.
    launcher: str | None = None


BASELINES = ("weak", "strong_fewshot", "full_weak", "gold_sft")
VARIANTS = ("weak", "icl", "hybrid")


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1] if errors else f"{key}: unexpected null")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(tp) or (Any,)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float:
        if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads `3e-4` as a string; `3.0e-4` as a float
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            raise ConfigError(f"{prefix + '.' if prefix else ''}{k}: unknown key "
                              f"(known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix + '.' if prefix else ''}{name}"
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    return cls(**kwargs)


def _validate_semantics(cfg: RunConfig) -> None:
    for name in ("gold", "unlabeled", "test", "hidden_gold", "dev"):
        p = getattr(cfg.data, name)
        if p is None or p.startswith("hf:"):
            continue
        if not Path(p).exists():
            raise ConfigError(f"data.{name}: file not found: {p}")
    for b in cfg.baselines:
        if b not in BASELINES:
            raise ConfigError(f"baselines: unknown baseline {b!r} (known: {', '.join(BASELINES)})")
    if not cfg.eval.test and not cfg.data.dev:
        raise ConfigError("eval.test: false leaves nothing to score: set data.dev (a labeled dev split)")
    for v in cfg.stage1.variants:
        if v not in VARIANTS:
            raise ConfigError(f"stage1.variants: unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    _validate_strategies(cfg)
    _validate_ranges(cfg)
    for key, model in (("weak.model", cfg.weak.model), ("strong.model", cfg.strong.model)):
        if model.startswith("tiny:"):
            from w2s.tiny_models import parse_tiny_spec

            try:
                parse_tiny_spec(model)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            continue
        local = Path(model)
        if (model.startswith((".", "/", "~")) or local.exists()) and not local.exists():
            raise ConfigError(f"{key}: model directory not found: {model}")
    _validate_training_keys(cfg)


def _validate_strategies(cfg: RunConfig) -> None:
    """Strategy names against the registries (the method's modules are light: no model imports)."""
    import w2s.method  # noqa: F401  (registers the built-in strategies)
    from w2s.method.registry import PAIRS, SELECTION, lookup

    for registry, name, key in ((SELECTION, cfg.stage1.selection, "stage1.selection"),
                                (PAIRS, cfg.stage2.pairs, "stage2.pairs")):
        try:
            lookup(registry, name, key)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {rule}, got {value!r}")


#: backend options that count something: a positive integer when given
_POSITIVE_OPTIONS = ("batch_size", "max_batch_tokens", "chunk_size", "concurrency", "tensor_parallel_size",
                     "max_model_len")


def _validate_ranges(cfg: RunConfig) -> None:
    """Values that would only fail (or silently mean something else) stages later."""
    for name in ("limit_gold", "limit_unlabeled", "limit_test", "limit_dev"):
        v = getattr(cfg.data, name)
        _require(v is None or v >= 1, f"data.{name}", ">= 1 (leave it out for every row)", v)
    _require(cfg.threads is None or cfg.threads >= 0, "threads", ">= 0 (0 = automatic)", cfg.threads)
    g = cfg.generation
    _require(g.max_new_tokens >= 1, "generation.max_new_tokens", ">= 1", g.max_new_tokens)
    for k in _POSITIVE_OPTIONS:
        v = g.options.get(k)
        if v is not None:
            _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"generation.options.{k}",
                     "an integer >= 1", v)
    s1 = cfg.stage1
    _require(s1.iterations >= 1, "stage1.iterations", ">= 1", s1.iterations)
    _require(s1.shots >= 1, "stage1.shots", ">= 1 (the strong model answers in-context)", s1.shots)
    _require(s1.confidence_samples >= 2, "stage1.confidence_samples", ">= 2 (a vote share needs several samples)",
             s1.confidence_samples)
    _require(s1.confidence_temperature > 0, "stage1.confidence_temperature",
             "> 0 (samples at temperature 0 are copies of one greedy answer)", s1.confidence_temperature)
    _require(0.0 <= s1.confidence_threshold <= 1.0, "stage1.confidence_threshold", "in [0, 1]",
             s1.confidence_threshold)
    s2 = cfg.stage2
    _require(s2.samples >= 2, "stage2.samples", ">= 2 (a majority vote needs several samples)", s2.samples)
    _require(s2.temperature > 0, "stage2.temperature",
             "> 0 (samples at temperature 0 are copies of one greedy answer: no vote)", s2.temperature)
    _require(0 < s2.top_p <= 1, "stage2.top_p", "in (0, 1]", s2.top_p)
    _require(s2.max_pairs >= 1, "stage2.max_pairs", ">= 1", s2.max_pairs)
    _require(1 <= s2.min_support <= s2.samples, "stage2.min_support", f"in [1, stage2.samples = {s2.samples}]",
             s2.min_support)
    for k in ("min_confidence", "flip_confidence"):
        _require(0.0 <= getattr(s2, k) <= 1.0, f"stage2.{k}", "in [0, 1]", getattr(s2, k))
    _validate_stage3(cfg)
    e = cfg.eval
    _require(e.n >= 0, "eval.n", ">= 0 (0 = greedy only)", e.n)
    _require(e.intermediate_n is None or e.intermediate_n >= 0, "eval.intermediate_n",
             ">= 0 (0 = greedy only; leave it out for eval.n)", e.intermediate_n)
    _require(e.temperature >= 0, "eval.temperature", ">= 0", e.temperature)
    _require(e.n == 0 or e.temperature > 0, "eval.temperature",
             "> 0 when eval.n > 0 (samples at temperature 0 are copies of the greedy answer; "
             "eval.n: 0 scores greedy only)", e.temperature)


def _validate_stage3(cfg: RunConfig) -> None:
    s3 = cfg.stage3
    from w2s.method import rewards  # noqa: F401  (registers the rewards; no model code)
    from w2s.method.registry import REWARDS, lookup

    try:
        lookup(REWARDS, s3.reward, "stage3.reward")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _require(s3.samples >= 2, "stage3.samples", ">= 2 (pseudo-labels are voted from several samples)", s3.samples)
    _require(s3.temperature > 0, "stage3.temperature", "> 0 (samples at temperature 0 are copies)", s3.temperature)
    _require(1 <= s3.min_support <= s3.samples, "stage3.min_support", f"in [1, stage3.samples = {s3.samples}]",
             s3.min_support)
    _require(0.0 <= s3.min_confidence <= 1.0, "stage3.min_confidence", "in [0, 1]", s3.min_confidence)
    _require(s3.rounds >= 1, "stage3.rounds", ">= 1", s3.rounds)
    _require(s3.max_questions is None or s3.max_questions >= 1, "stage3.max_questions",
             ">= 1 (leave it out for every question)", s3.max_questions)
    for k in ("reward", "task"):
        _require(k not in s3.train, f"stage3.train.{k}", "left out (the run sets it: stage3.reward, task)",
                 s3.train.get(k))
    if s3.enabled and s3.start in ("m_pro_dpo", "m_pro_orpo"):
        method = s3.start.split("_")[-1]
        _require(cfg.stage2.enabled and cfg.stage2.method in (method, "both"), "stage3.start",
                 f"a model this run trains (stage2.enabled with stage2.method {method} or both)", s3.start)


def _validate_training_keys(cfg: RunConfig) -> None:
    """Check training settings' keys against w2s.training's dataclasses (cheap import)."""
    from w2s.training.settings import GRPOSettings, LoraSettings, PreferenceSettings, SFTSettings

    checks = [("weak.train", cfg.weak.train, SFTSettings), ("strong.train", cfg.strong.train, SFTSettings),
              ("strong.lora", cfg.strong.lora or {}, LoraSettings),
              ("stage2.train", cfg.stage2.train, PreferenceSettings),
              ("stage3.train", cfg.stage3.train, GRPOSettings)]
    for key, values, cls in checks:
        known = {f.name for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for k in values:
            if k not in known:
                raise ConfigError(f"{key}.{k}: unknown key (known: {', '.join(sorted(known))})")
            values[k] = _check_type(values[k], hints[k], f"{key}.{k}")
        try:
            cls(**values)  # the settings' own checks (ranges, choices), before any stage runs
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{_culprit(cls, values, key)}: {e}") from None


def _culprit(cls, values: dict, key: str) -> str:
    """The full key of the setting a dataclass refused (`strong.train.learning_rate`): the one
    that fails on its own; the section when only a combination fails."""
    for k, v in values.items():
        try:
            cls(**{k: v})
        except (TypeError, ValueError):
            return f"{key}.{k}"
    return key


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> RunConfig:
    """Load and validate a YAML run config. Relative data/model paths are resolved against
    the config file's directory first, then the current directory."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        return config_from_dict(raw, base_dir=path.parent, overrides=overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None  # the key, and in which file


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
    cfg = _build(RunConfig, raw, "")
    _validate_semantics(cfg)
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
    """`stage2.min_confidence=0.7` -> {"stage2": {"min_confidence": 0.7}} (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    node: Any = yaml.safe_load(value)
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
