"""The `hf` backend: transformers model + tokenizer, our own batched decode loop.

Why not `model.generate`? Four things the method needs and `generate` makes hard or slow:
  * per-sample seeds that do not depend on batch composition (each row draws from its own
    seeded uniform stream, so a sample is the same alone, in any batch, after resume);
  * per-sequence stop strings with the finished rows DROPPED from the batch (and the KV
    cache) instead of being padded along until the slowest row ends;
  * batches built from length-sorted prompts under a token budget (little padding);
  * greedy output identical to one-prompt-at-a-time output (correct position ids and
    attention mask under left padding).
The loaded model is cached across calls (the pipeline generates many times with the same
model); `unload()` frees it before training.

Lengths are bounded by the model's context (`max_position_embeddings`): a prompt that leaves
no room for one new token is refused by id (one that cannot fit is refused before it is even
tokenized), and each row generates at most `context - prompt length` tokens.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from w2s import models
from w2s.generation.sampling import SamplingConfig, WorkItem, cut_at_stop


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    device: object
    eos_ids: frozenset
    pad_id: int
    cache_kwarg: str  # "cache" (transformers >= 5.x) or "past_key_values" (older 5.x)
    context: int | None = None  # longest sequence (prompt + new tokens); None = unknown


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
#: Uniform random numbers drawn per row at a time (memory does not grow with max_new_tokens).
UNIFORM_CHUNK = 256


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
                 device: str = "auto", batch_size: int = 32, max_batch_tokens: int | None = None,
                 trust_remote_code: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model, self.adapter = str(model), adapter
        self.dtype, self.device, self.trust_remote_code = dtype, device, trust_remote_code
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        lm = load_model(self.model, self.adapter, self.dtype, self.device, self.trust_remote_code)
        encoded = encode_checked(lm, [it.prompt for it in items], [it.id for it in items])
        max_new = sampling.max_new_tokens if lm.context is None else min(sampling.max_new_tokens, lm.context)
        for batch in length_sorted_batches([len(e) for e in encoded], self.batch_size,
                                           self.max_batch_tokens, max_new):
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


def length_sorted_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None,
                          max_new_tokens: int) -> list[list[int]]:
    """Group indices by descending prompt length (little padding; the biggest batch runs first,
    so memory problems show up at once). A batch holds at most `batch_size` rows and, with a
    budget, rows * (longest prompt + max_new_tokens) <= max_batch_tokens (at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        too_many = len(current) >= batch_size
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


def pick_tokens(logits, sampling: SamplingConfig, uniforms):
    """Next token per row: argmax when greedy; otherwise temperature / top-k / top-p and an
    inverse-CDF draw with each row's own uniform number (no shared RNG state)."""
    import torch

    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    sorted_p, sorted_idx = probs.sort(dim=-1, descending=True)
    if sampling.top_p < 1.0:
        mass_before = sorted_p.cumsum(dim=-1) - sorted_p
        sorted_p = sorted_p.masked_fill(mass_before >= sampling.top_p, 0.0)
    cdf = sorted_p.cumsum(dim=-1)
    target = (uniforms.to(cdf.device, cdf.dtype) * cdf[:, -1]).unsqueeze(1)
    j = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    return sorted_idx.gather(1, j).squeeze(1)


def decode_batch(lm: LoadedModel, prompts: list[list[int]], seeds: list[int],
                 sampling: SamplingConfig) -> list[dict]:
    """Decode one left-padded batch; rows leave the batch (and the KV cache) as they finish.
    Each row generates at most max_new_tokens, and never past the model's context."""
    import torch
    from transformers import DynamicCache

    model, dev = lm.model, lm.device
    n_rows = len(prompts)
    limits = [sampling.max_new_tokens if lm.context is None
              else max(1, min(sampling.max_new_tokens, lm.context - len(p))) for p in prompts]
    input_ids, mask, position_ids = _left_padded(lm, prompts)
    # One seeded CPU generator per row, read in chunks: the same stream as drawing all
    # max_new_tokens numbers at once (CPU uniform draws are sequential), in bounded memory.
    generators = None if sampling.greedy else [torch.Generator().manual_seed(s) for s in seeds]
    uniforms = None
    stop_window = max((len(s.encode()) for s in sampling.stop), default=0) + 4
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    finish: list[str | None] = [None] * n_rows
    rows = torch.arange(n_rows)  # batch position -> original row
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        logits = _prefill(lm, prompts, input_ids, mask, position_ids, cache)
        next_pos = position_ids[:, -1] + 1
        for step in range(max(limits)):
            if generators is not None and step % UNIFORM_CHUNK == 0:
                size = min(UNIFORM_CHUNK, max(limits) - step)
                uniforms = torch.stack([torch.rand(size, generator=g, dtype=torch.float64)
                                        for g in generators])
            tokens = pick_tokens(logits, sampling,
                                 None if uniforms is None else uniforms[rows, step % UNIFORM_CHUNK])
            keep = _advance(lm, rows.tolist(), tokens.tolist(), generated, finish, sampling,
                            stop_window, limits)
            if not keep:
                break
            if len(keep) < len(rows):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, next_pos, tokens = mask[idx], next_pos[idx], tokens[idx]
                rows = rows[torch.tensor(keep)]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits = model(input_ids=tokens.unsqueeze(1), attention_mask=mask,
                           position_ids=next_pos.unsqueeze(1), use_cache=True,
                           **{lm.cache_kwarg: cache}).logits[:, -1, :]
            next_pos = next_pos + 1
    return [_result(lm, generated[r], finish[r], sampling) for r in range(n_rows)]


def _left_padded(lm: LoadedModel, prompts: list[list[int]]):
    """(input_ids, attention_mask, position_ids) of the prompts, left-padded, on the model's device."""
    import torch

    n_rows, width = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((n_rows, width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((n_rows, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        input_ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(lm.device), mask.to(lm.device), position_ids.to(lm.device)


def _prefill(lm: LoadedModel, prompts: list[list[int]], input_ids, mask, position_ids, cache):
    """The last-position logits of every row after its prompt, the cache filled. Samples of one
    prompt sit side by side in a batch: each distinct prompt is prefilled once and its cache
    rows copied (a 4-shot prompt's prefill costs more than its 80 new tokens)."""
    import torch

    distinct: dict[tuple, int] = {}   # prompt -> its position among the prefilled rows
    first_rows, copies = [], []
    for r, p in enumerate(prompts):
        if distinct.setdefault(tuple(p), len(first_rows)) == len(first_rows):
            first_rows.append(r)
        copies.append(distinct[tuple(p)])
    if len(first_rows) == len(prompts):
        return lm.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                        logits_to_keep=1, **{lm.cache_kwarg: cache}).logits[:, -1, :]
    first, copy_of = torch.tensor(first_rows), torch.tensor(copies).to(lm.device)
    logits = lm.model(input_ids=input_ids[first], attention_mask=mask[first], position_ids=position_ids[first],
                      use_cache=True, logits_to_keep=1, **{lm.cache_kwarg: cache}).logits[:, -1, :]
    cache.batch_select_indices(copy_of)
    return logits[copy_of]


def _advance(lm: LoadedModel, rows: list[int], tokens: list[int], generated, finish,
             sampling: SamplingConfig, stop_window: int, limits: list[int]) -> list[int]:
    """Append each row's new token, mark finished rows; returns batch positions still running."""
    check = []
    for j, (r, t) in enumerate(zip(rows, tokens)):
        generated[r].append(t)
        if t in lm.eos_ids:
            finish[r] = "stop"
        else:
            check.append(j)
    if sampling.stop and check:
        tails = lm.tokenizer.batch_decode([generated[rows[j]][-stop_window:] for j in check],
                                          skip_special_tokens=True)
        hit = {j for j, tail in zip(check, tails) if any(s in tail for s in sampling.stop)}
        for j in hit:
            finish[rows[j]] = "stop"
        check = [j for j in check if j not in hit]
    keep = []
    for j in check:
        if len(generated[rows[j]]) >= limits[rows[j]]:
            finish[rows[j]] = "length"
        else:
            keep.append(j)
    return keep


def _result(lm: LoadedModel, tokens: list[int], finish: str | None, sampling: SamplingConfig) -> dict:
    body = tokens[:-1] if tokens and tokens[-1] in lm.eos_ids else tokens
    text = lm.tokenizer.decode(body, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    text, hit = cut_at_stop(text, sampling.stop)
    reason = "stop" if (hit or finish == "stop") else "length"
    return {"response": text, "finish_reason": reason, "n_tokens": len(tokens)}
