"""Reading model directories and freeing their memory: the one place that loads a causal LM or
its tokenizer, for generation and training alike. Weights load from safetensors only; a LoRA
adapter directory loads onto its base model with the adapter merged in."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

from w2s.io import DataError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def free_memory() -> None:
    """Collect garbage and give cached GPU memory back (before the next stage loads a model)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def is_adapter_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def adapter_base(path: str | os.PathLike) -> str:
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    return cfg["base_model_name_or_path"]


def tokenizer_source(path: str | os.PathLike) -> str:
    """The directory to read a model's tokenizer from (an adapter dir may lack one)."""
    p = Path(path)
    if (p / "adapter_config.json").is_file() and not (p / "tokenizer_config.json").exists():
        return adapter_base(p)
    return str(path)


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    source = tokenizer_source(path)
    if Path(source).is_dir() and not any((Path(source) / f).exists() for f in TOKENIZER_FILES):
        raise DataError(source, f"no tokenizer files ({', '.join(TOKENIZER_FILES)}); a model directory "
                                "needs the tokenizer it was trained with")
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise DataError(source, f"cannot load its tokenizer: {_first_line(e)}") from None


def load_causal_lm(path: str | os.PathLike, *, dtype=None, adapter: str | os.PathLike | None = None,
                   attn_implementation: str | None = None, trust_remote_code: bool = False,
                   device_map: Any = None):
    """A causal LM from a model directory or hub name; `path` may itself be an adapter dir (loaded
    onto its base), and `adapter` adds one on top; adapters are merged into the weights."""
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kw["dtype"] = dtype
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if device_map is not None:
        kw["device_map"] = device_map
    adapters = [str(a) for a in (path if is_adapter_dir(path) else None, adapter) if a is not None]
    base = adapter_base(path) if is_adapter_dir(path) else str(path)
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kw)
    except (OSError, SafetensorError) as e:  # a missing or damaged model dir: one line naming it
        raise DataError(base, f"cannot load the model: {_first_line(e)}") from None
    if adapters:
        from peft import PeftModel

        for a in adapters:
            model = PeftModel.from_pretrained(model, a).merge_and_unload()
        model.config._name_or_path = str(path)
    return model


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
