"""What a run config's types cannot say: files exist, registered names resolve, settings that
only make sense together, training settings against w2s.training's own types. Each check raises
a ConfigError naming the key, before any stage runs."""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from w2s.generation.resumable import BACKEND_REGISTRY
from w2s.io import parse_hub_spec
from w2s.generation.sampling import check_sampling
from w2s.method.registry import LABEL_RULES, PAIRS, REWARDS, SELECTION
from w2s.pipeline.config_errors import ConfigError
from w2s.pipeline.graph import PARTS
from w2s.tasks import make_task
from w2s.tasks.base import TASKS
from w2s.tiny_models import parse_tiny_spec
from w2s.training import settings as training_settings

SETTINGS = {"sft": training_settings.SFTSettings, "preference": training_settings.PreferenceSettings,
            "grpo": training_settings.GRPOSettings, "lora": training_settings.LoraSettings}


def check_semantics(cfg) -> None:
    for check in (_data_files, _task, _models, _registered_names, _together, _sampling, _generation_options,
                  _training):
        check(cfg)


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {rule}, got {value!r}")


def _data_files(cfg) -> None:
    for name in ("gold", "unlabeled", "test", "hidden_gold", "dev"):
        p = getattr(cfg.data, name)
        if p is not None and p.startswith("hf:"):
            _hub_split(name, p)
        elif p is not None and not Path(p).exists():
            hint = next((f" (the paper's data: w2s data {d} --out data/{d}, from the repository root)"
                         for d in ("gsm8k", "math") if f"/data/{d}/" in p.replace("\\", "/")), "")
            raise ConfigError(f"data.{name}: file not found: {p}{hint}")
    if not cfg.eval.test and not cfg.data.dev:
        raise ConfigError("eval.test: false leaves nothing to score: set data.dev (a labeled dev split)")


def _hub_split(key: str, spec: str) -> None:
    """A scoring split from the hub must name its split: a silent `train` would score everyone on
    training questions."""
    try:
        hub = parse_hub_spec(spec)
    except ValueError as e:
        raise ConfigError(f"data.{key}: {e}") from None
    if key in ("test", "dev") and hub.split is None:
        raise ConfigError(f"data.{key}: {spec} names no split: add one, e.g. {spec}@test (or @validation); "
                          "without it the hub's train split would be scored")


def _task(cfg) -> None:
    if isinstance(cfg.task, dict):
        _task_options(cfg.task)
    try:
        make_task(cfg.task)
    except (ValueError, TypeError) as e:
        message = str(e)
        raise ConfigError(message if message.startswith("task") else f"task: {message}") from None


def _task_options(spec: dict) -> None:
    """A task's options against its constructor: a typo names the key and the nearest option."""
    try:
        cls = TASKS.get(spec.get("name"), "task.name").obj
    except ValueError as e:
        raise ConfigError(str(e)) from None
    known = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    for key in spec:
        if key != "name" and key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"task.{key}: unknown option of task {spec['name']!r} (known: {', '.join(known)})"
                              + (f"; did you mean {near[0]!r}?" if near else ""))


def _models(cfg) -> None:
    for key, model in (("weak.model", cfg.weak.model), ("strong.model", cfg.strong.model)):
        if model.startswith("tiny:"):
            try:
                parse_tiny_spec(model)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            continue
        local = Path(model)
        if (model.startswith((".", "/", "~")) or local.exists()) and not local.exists():
            raise ConfigError(f"{key}: model directory not found: {model}")


def _registered_names(cfg) -> None:
    """Each strategy resolves (built-in, or package.module:object), and so does each extra part."""
    try:
        SELECTION.get(cfg.stage1.selection, "stage1.selection")
        PAIRS.get(cfg.stage2.pairs, "stage2.pairs")
        reward = REWARDS.get(cfg.stage3.reward, "stage3.reward")
        LABEL_RULES.get(reward.obj.pseudo_label_rule, "stage3.reward's pseudo_label_rule")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for i, spec in enumerate(cfg.parts):
        try:
            PARTS.get(spec, f"parts[{i}]")
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _together(cfg) -> None:
    s2, s3, e = cfg.stage2, cfg.stage3, cfg.eval
    if cfg.hub.push and not (cfg.hub.prefix and cfg.hub.prefix.count("/") == 1):
        raise ConfigError(f"hub.prefix: must be ORG/NAME when hub.push is true, got {cfg.hub.prefix!r}")
    _require(s2.min_support <= s2.samples, "stage2.min_support", f"in [1, stage2.samples = {s2.samples}]",
             s2.min_support)
    _require(s3.min_support <= s3.samples, "stage3.min_support", f"in [1, stage3.samples = {s3.samples}]",
             s3.min_support)
    _require(e.n == 0 or e.temperature > 0, "eval.temperature",
             "> 0 when eval.n > 0 (samples at temperature 0 are copies of the greedy answer; "
             "eval.n: 0 scores greedy only)", e.temperature)
    for k in ("reward", "task"):
        _require(k not in s3.train, f"stage3.train.{k}", "left out (the run sets it: stage3.reward, task)",
                 s3.train.get(k))
    if s3.enabled and s3.start in ("m_pro_dpo", "m_pro_orpo"):
        method = s3.start.split("_")[-1]
        _require(s2.enabled and s2.method in (method, "both"), "stage3.start",
                 f"a model this run trains (stage2.enabled with stage2.method {method} or both)", s3.start)


def _sampling(cfg) -> None:
    """Every sampling setting through the one check the CLI and the server use."""
    for section, fields in (("stage1", {"temperature": "confidence_temperature"}),
                            ("stage2", {"temperature": "temperature", "top_p": "top_p"}),
                            ("stage3", {"temperature": "temperature"}), ("eval", {"temperature": "temperature"})):
        values = {field: getattr(getattr(cfg, section), key) for field, key in fields.items()}
        try:
            check_sampling(**values, max_new_tokens=cfg.generation.max_new_tokens,
                           names={field: f"{section}.{key}" for field, key in fields.items()})
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _generation_options(cfg) -> None:
    """Each generation option is one some backend of the run takes: a typo names the nearest."""
    backends = sorted({cfg.generation.backend, cfg.weak.backend or cfg.generation.backend})
    known = set().union(*(backend_options(name) for name in backends))
    for key in cfg.generation.options:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"generation.options.{key}: unknown option of the {' / '.join(backends)} backend "
                              f"(known: {', '.join(sorted(known))})" + (f"; did you mean {near[0]!r}?" if near else ""))


def backend_options(name: str) -> set[str]:
    """The keyword options a generation backend's constructor takes (its module is light)."""
    cls = BACKEND_REGISTRY.get(name, "generation.backend").obj
    if hasattr(cls, "spec"):  # a built-in backend, imported on first use
        module, _, attr = cls.spec.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    return {p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind == p.KEYWORD_ONLY} - {"adapter"}


def _training(cfg) -> None:
    for key, values, kind in (("weak.train", cfg.weak.train, "sft"), ("strong.train", cfg.strong.train, "sft"),
                              ("strong.lora", cfg.strong.lora, "lora"),
                              ("stage2.train", cfg.stage2.train, "preference"),
                              ("stage3.train", cfg.stage3.train, "grpo")):
        if values is not None:
            settings = check_settings(SETTINGS[kind], values, key)
            for k in values:  # the typed value (`3e-4` from YAML is a string until here)
                value = getattr(settings, k, values[k])
                values[k] = values[k] if isinstance(value, BaseModel) else value


def check_settings(cls, values: dict, key: str):
    """`values` as `cls` (a w2s.training settings type): unknown keys, types and ranges, each
    error naming the full key (`strong.train.learning_rate`)."""
    try:
        return training_settings.validate_settings(cls, values, key)
    except ValueError as e:
        raise ConfigError(str(e)) from None
