"""The `hf` backend: transformers model + tokenizer, our own batched decode loop.

Why not `model.generate`? Four things the method needs and `generate` makes hard or slow:
  * per-sample seeds that do not depend on batch composition (each row draws from its own
    seeded uniform stream, so a sample is the same alone, in any batch, after resume);
  * per-sequence stop strings with the finished rows DROPPED from the batch (and the KV
    cache) instead of being padded along until the slowest row ends;
  * batches built from length-sorted prompts under a token budget (little padding; short
    zero-shot prompts make bigger batches than few-shot ones, see `default_batch_tokens`);
  * greedy output identical to one-prompt-at-a-time output (correct position ids and
    attention mask under left padding).
The decode loop (preallocated KV cache, prefix sharing, sampling) is in `hf_decode`.
The loaded model is cached across calls (the pipeline generates many times with the same
model); `unload()` frees it before training.

Lengths are bounded by the model's context (`max_position_embeddings`): a prompt that leaves
no room for one new token is refused by id (one that cannot fit is refused before it is even
tokenized), and each row generates at most `context - prompt length` tokens.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterator

from w2s import models
from w2s.generation.hf_decode import LoadedModel, decode_batch, pick_tokens  # noqa: F401 - also this module's API
from w2s.generation.sampling import SamplingConfig, WorkItem


class PromptTooLong(ValueError):
    """Prompts that do not fit the model's context, named by id."""

    def __init__(self, ids: list[str], context: int):
        self.ids, self.context = ids, context
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        super().__init__(f"{len(ids)} prompt(s) do not fit the model's context of {context} tokens "
                         f"(no room for a new token): id {shown}; shorten or drop them")


#: A token is rarely longer than this many characters, so a prompt with more than
#: context * MAX_CHARS_PER_TOKEN characters cannot fit: refused without tokenizing it
#: (tokenizing a 50 MB record takes minutes and gigabytes).
MAX_CHARS_PER_TOKEN = 64
#: The default token budget of a batch (prompt + new tokens, summed over rows): as many as fit
#: KV_CACHE_BYTES of keys and values, at most MAX_BATCH_TOKENS (bigger batches do not run
#: faster on CPU), DEFAULT_BATCH_TOKENS when the model's config does not tell.
KV_CACHE_BYTES = 2 * 1024 ** 3
MAX_BATCH_TOKENS = 32768
DEFAULT_BATCH_TOKENS = 16384


_LOADED: tuple[tuple, LoadedModel] | None = None


def resolve_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device):
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
    return names[dtype]


def load_model(model: str, adapter: str | None = None, dtype: str = "auto", device: str = "auto",
               trust_remote_code: bool = False) -> LoadedModel:
    """Load (or reuse) a causal LM with an optional PEFT adapter merged in. Only one model is
    kept: loading another one frees the previous first."""
    global _LOADED
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    key = (str(model), str(adapter) if adapter else None, str(torch_dtype), str(dev))
    if _LOADED is not None and _LOADED[0] == key:
        return _LOADED[1]
    unload()
    lm = models.load_causal_lm(model, dtype=torch_dtype, adapter=adapter, trust_remote_code=trust_remote_code,
                               device_map={"": dev.index or 0} if dev.type == "cuda" else None)
    lm.to(dev).eval()
    has_own_tokenizer = adapter and (Path(adapter) / "tokenizer_config.json").exists()
    tokenizer = models.load_tokenizer(adapter if has_own_tokenizer else model, trust_remote_code=trust_remote_code)
    eos = set()
    for source in (getattr(lm.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            eos.add(source)
        elif source:
            eos.update(source)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    params = inspect.signature(lm.forward).parameters
    cache_kwarg = "cache" if "cache" in params else "past_key_values"
    loaded = LoadedModel(lm, tokenizer, dev, frozenset(eos), pad, cache_kwarg, context_length(lm.config))
    _LOADED = (key, loaded)
    return loaded


def context_length(config) -> int | None:
    """The longest sequence the model takes (prompt + generated tokens), from its config."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def unload() -> None:
    """Free the cached model (and GPU memory) so that training can use it."""
    global _LOADED
    if _LOADED is None:
        return
    _LOADED = None
    models.free_memory()


class HFBackend:
    """Batched generation with a local transformers model (see the module docstring)."""

    deduplicate_greedy = True

    def __init__(self, model: str, adapter: str | None = None, *, dtype: str = "auto",
                 device: str = "auto", batch_size: int | None = None, max_batch_tokens: int | None = None,
                 trust_remote_code: bool = False):
        for name, value in (("batch_size", batch_size), ("max_batch_tokens", max_batch_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        self.model, self.adapter = str(model), adapter
        self.dtype, self.device, self.trust_remote_code = dtype, device, trust_remote_code
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        lm = load_model(self.model, self.adapter, self.dtype, self.device, self.trust_remote_code)
        encoded = encode_checked(lm, [it.prompt for it in items], [it.id for it in items])
        max_new = sampling.max_new_tokens if lm.context is None else min(sampling.max_new_tokens, lm.context)
        budget = self.max_batch_tokens or default_batch_tokens(lm)
        for batch in length_sorted_batches([len(e) for e in encoded], self.batch_size, budget, max_new):
            results = decode_batch(lm, [encoded[i] for i in batch], [items[i].seed for i in batch],
                                   sampling)
            yield [{"id": items[i].id, "sample_index": items[i].sample_index, **res}
                   for i, res in zip(batch, results)]


def encode_prompts(lm: LoadedModel, prompts: list[str]) -> list[list[int]]:
    """Tokenize as the tokenizer does by default (special tokens included), never empty."""
    ids = lm.tokenizer(prompts, add_special_tokens=True)["input_ids"]
    fallback = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None else lm.pad_id
    return [list(x) if len(x) else [fallback] for x in ids]


def encode_checked(lm: LoadedModel, prompts: list[str], ids: list[str]) -> list[list[int]]:
    """`encode_prompts`, refusing (by id, before anything is generated) prompts that leave no
    room for a new token in the model's context; hopelessly long ones are never tokenized."""
    if lm.context is None:
        return encode_prompts(lm, prompts)
    too_long = {i for i, p in enumerate(prompts) if len(p) > lm.context * MAX_CHARS_PER_TOKEN}
    rest = [i for i in range(len(prompts)) if i not in too_long]
    encoded = dict(zip(rest, encode_prompts(lm, [prompts[i] for i in rest]))) if rest else {}
    too_long |= {i for i, e in encoded.items() if len(e) >= lm.context}
    if too_long:
        raise PromptTooLong([str(ids[i]) for i in sorted(too_long)], lm.context)
    return [encoded[i] for i in range(len(prompts))]


def default_batch_tokens(lm: LoadedModel) -> int:
    """The token budget of a batch when none is given: as many tokens (prompt + new, per row)
    as fit KV_CACHE_BYTES of KV cache, at most MAX_BATCH_TOKENS (DEFAULT_BATCH_TOKENS when the
    config does not say how big a token's keys and values are)."""
    cfg = lm.model.config.get_text_config()
    try:
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * lm.model.dtype.itemsize
    except (AttributeError, TypeError, ZeroDivisionError):
        return DEFAULT_BATCH_TOKENS
    return max(1024, min(MAX_BATCH_TOKENS, KV_CACHE_BYTES // per_token))


def length_sorted_batches(lengths: list[int], batch_size: int | None, max_batch_tokens: int | None,
                          max_new_tokens: int) -> list[list[int]]:
    """Group indices by descending prompt length (little padding; the biggest batch runs first,
    so memory problems show up at once). A batch holds rows * (longest prompt + max_new_tokens)
    <= max_batch_tokens tokens (at least one row), and at most `batch_size` rows if given: short
    zero-shot prompts make big batches, few-shot ones smaller."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        too_many = batch_size is not None and len(current) >= batch_size
        over_budget = (max_batch_tokens is not None and current
                       and (len(current) + 1) * (longest_if_added + max_new_tokens) > max_batch_tokens)
        if current and (too_many or over_budget):
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches
