"""Reading model directories and freeing their memory: the one place that loads a causal LM or
its tokenizer, for generation and training alike. Weights load from safetensors only; a LoRA
adapter directory loads onto its base model with the adapter merged in.

A local model's config.json is checked before any tensor is allocated (`check_model_config`):
every size is a positive whole number, and the parameters the config implies (a lower bound:
embeddings plus attention and MLP per layer) must fit, within a wide factor, in the parameters
its safetensors files hold (counted from their headers, not loaded). A config with
`num_hidden_layers: 100000` over a 2-layer checkpoint is one line naming the field, not
gigabytes of allocation and a traceback."""

from __future__ import annotations

import gc
import json
import math
import os
from pathlib import Path
from typing import Any

from w2s.io import DataError, read_json

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
                   device_map: Any = None, quantization_config: Any = None):
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
    if quantization_config is not None:
        kw["quantization_config"] = quantization_config
    adapters = [str(a) for a in (path if is_adapter_dir(path) else None, adapter) if a is not None]
    base = adapter_base(path) if is_adapter_dir(path) else str(path)
    check_model_config(base)
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


# ---- config.json against the weights ---------------------------------------------------------
#: fields that count something (layers, heads, widths): a positive whole number when present
SIZE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "max_position_embeddings", "n_embd", "n_layer", "n_head",
               "n_inner", "n_positions", "d_model", "num_layers", "ffn_dim")
#: counts that may be 0 (mixture-of-experts settings of a dense model)
COUNT_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size",
                "num_experts_per_tok")
MAX_SIZE = 2**31 - 1        # past int32 indexing: no real model has such a width or count
WEIGHTS_SLACK = 4           # the implied count is a lower bound; this absorbs what it ignores
PACKED_SLACK = 16           # quantized weights pack up to 16 parameters into one stored element
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on its JSON header
_ALIASES = {"vocab": ("vocab_size", "padded_vocab_size"), "hidden": ("hidden_size", "n_embd", "d_model"),
            "layers": ("num_hidden_layers", "n_layer", "num_layers"), "heads": ("num_attention_heads", "n_head"),
            "kv_heads": ("num_key_value_heads",), "head_dim": ("head_dim",),
            "ffn": ("intermediate_size", "n_inner", "ffn_dim")}


def check_model_config(path: str | os.PathLike) -> None:
    """Refuse, before anything is allocated, a local model (or an adapter's local base) whose
    config.json has a size that is not a positive whole number, or implies far more parameters
    than its safetensors files hold. Raises DataError, one line naming config.json and the
    field. Hub names and directories without config.json are left to transformers."""
    model_dir = Path(path)
    if is_adapter_dir(model_dir):
        try:
            model_dir = Path(adapter_base(model_dir))
        except (OSError, ValueError, KeyError):
            return  # load_causal_lm / PEFT say what is wrong with the adapter
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise DataError(config_path, f"expected a JSON object, got {type(config).__name__}")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    for section in {id(config): config, id(text): text}.values():
        _check_sizes(config_path, section)
    held = stored_parameter_count(model_dir)
    if not held:
        return  # no safetensors to compare with: transformers reports the missing weights
    implied = implied_parameter_count(text)
    slack = WEIGHTS_SLACK * (PACKED_SLACK if config.get("quantization_config") else 1)
    if implied > slack * held:
        field = _largest_factor(text, implied, slack * held)
        raise DataError(config_path, f"{field} = {text[field]}: the config implies at least {implied:,} "
                                     f"parameters, but the weights hold {held:,}; fix config.json or use the "
                                     "weights it belongs to")


def _check_sizes(config_path: Path, section: dict) -> None:
    for key in (*SIZE_FIELDS, *COUNT_FIELDS):
        value = section.get(key)
        for v in value if isinstance(value, list) else [value]:  # some configs give one size per layer
            if v is None:
                continue
            least = 0 if key in COUNT_FIELDS else 1
            if isinstance(v, bool) or not isinstance(v, int):
                raise DataError(config_path, f"{key} = {json.dumps(value)}: expected a whole number")
            if v < least:
                raise DataError(config_path, f"{key} = {v}: expected a {'non-negative' if least == 0 else 'positive'} "
                                             "whole number")
            if v > MAX_SIZE:
                raise DataError(config_path, f"{key} = {v}: larger than any model's (at most {MAX_SIZE:,})")


def _size(config: dict, what: str, default: int = 0) -> int:
    for key in _ALIASES[what]:
        v = config.get(key)
        if isinstance(v, list):
            v = min(v, default=None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return default


def implied_parameter_count(config: dict) -> int:
    """A lower bound on the parameters a decoder config describes: the embedding matrix (once,
    tied or not) plus, per layer, the attention projections and a two-matrix MLP (gated MLPs,
    experts, norms and biases only add). Sizes the config leaves out count as 0."""
    hidden, heads = _size(config, "hidden"), _size(config, "heads")
    kv_heads = _size(config, "kv_heads", heads)
    head_dim = _size(config, "head_dim", hidden // heads if heads else 0)
    attention = hidden * head_dim * 2 * (heads + kv_heads)
    per_layer = max(attention + 2 * hidden * _size(config, "ffn"), hidden)  # at least a norm
    return _size(config, "vocab") * hidden + _size(config, "layers") * per_layer


def _largest_factor(config: dict, implied: int, limit: int) -> str:
    """The field to blame: the one whose value accounts for most of the implied count (set to 1,
    the count falls most) if that alone makes it fit, else the width every term scales with."""
    present = [k for keys in _ALIASES.values() for k in keys if isinstance(config.get(k), int)]
    without = {k: implied_parameter_count({**config, k: 1}) for k in present}
    widths = [k for k in _ALIASES["hidden"] if k in present]
    others = [k for k in present if k not in widths] or present
    best = min(others, key=lambda k: without[k])
    return best if without[best] <= limit or not widths else widths[0]


def stored_parameter_count(model_dir: str | os.PathLike) -> int | None:
    """Parameters in a model directory's safetensors files (model.safetensors, or the shards
    its model.safetensors.index.json names), from the headers alone; None when there are none
    or a shard is missing (transformers names it)."""
    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        table = read_json(index)
        weight_map = table.get("weight_map") if isinstance(table, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise DataError(index, "expected a 'weight_map' of tensor names to shard file names")
        files = [d / Path(name).name for name in sorted(set(weight_map.values()))]
    else:
        files = [d / "model.safetensors"]
    if not files or not all(f.is_file() for f in files):
        return None
    return sum(safetensors_elements(f) for f in files)


def safetensors_elements(path: Path) -> int:
    """Elements of all tensors in one safetensors file: its first 8 bytes are the length of a
    JSON header giving each tensor's dtype and shape."""
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(b"version "):
            raise DataError(path, "is a git-lfs pointer, not the weights (run `git lfs pull` in the model directory)")
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            raise DataError(path, "not a safetensors file (its header length does not fit the file)")
        try:
            header = json.loads(f.read(size))
            shapes = [t["shape"] for name, t in header.items() if name != "__metadata__"]
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise DataError(path, "not a safetensors file (its header is not a JSON table of tensors)") from None
    total = 0
    for shape in shapes:
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise DataError(path, f"not a safetensors file (tensor shape {shape!r})")
        total += math.prod(shape)
    return total
