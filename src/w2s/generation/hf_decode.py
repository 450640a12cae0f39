"""The `hf` backend's decode loop: one left-padded batch from prompt to finished responses.

What makes it fast on small models, where bookkeeping costs as much as the arithmetic:
  * a preallocated KV cache (`SlotCache`): keys and values of the whole batch live in tensors
    sized prompt width + max new tokens, each step writes one column (no growth by
    concatenation, which copies the whole cache at every step);
  * finished rows leave the batch at once, and only the running rows from the batch's end that
    take their places are copied (transformers' cache copies every row to drop one);
  * samples of one prompt share its prefill (each distinct prompt is prefilled once);
  * sampling sorts probability VALUES only (numpy's vectorized sort, far faster than
    `torch.sort` with indices on CPU) and finds the drawn token by its value.
Every piece computes the same numbers as the straightforward loop (grow the cache, drop
finished rows at once, `torch.sort`): the outputs are identical, greedy and seeded samples
(bench/decode_identity.py checks 1000 toy prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from w2s.generation.sampling import SamplingConfig, cut_at_stop


@dataclass
class LoadedModel:
    """A loaded model with what decoding needs (made by `w2s.generation.hf.load_model`)."""

    model: object
    tokenizer: object
    device: object
    eos_ids: frozenset
    pad_id: int
    cache_kwarg: str  # "cache" (transformers >= 5.x) or "past_key_values" (older 5.x)
    context: int | None = None  # longest sequence (prompt + new tokens); None = unknown


#: Uniform random numbers drawn per row at a time (memory does not grow with max_new_tokens).
UNIFORM_CHUNK = 256
#: Prompt tokens prefilled per forward pass (bounds the prefill's activations).
PREFILL_TOKENS = 16384


def decode_batch(lm: LoadedModel, prompts: list[list[int]], seeds: list[int],
                 sampling: SamplingConfig) -> list[dict]:
    """Decode one left-padded batch. Each row generates at most max_new_tokens, and never past
    the model's context; a row ends at an EOS token or a stop string."""
    import torch

    n_rows = len(prompts)
    limits = [sampling.max_new_tokens if lm.context is None
              else max(1, min(sampling.max_new_tokens, lm.context - len(p))) for p in prompts]
    input_ids, mask, position_ids = _left_padded(lm, prompts)
    draws = _Uniforms(seeds, max(limits)) if not sampling.greedy else None
    stop_window = max((len(s.encode()) for s in sampling.stop), default=0) + 4
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    finish: list[str | None] = [None] * n_rows
    with torch.inference_mode():
        cache, logits = _prefill(lm, prompts, input_ids, mask, position_ids, input_ids.shape[1] + max(limits))
        batch = _Batch(lm, mask, position_ids[:, -1] + 1, max(limits))
        for step in range(max(limits)):
            tokens = pick_tokens(logits, sampling, None if draws is None else draws.at(step, batch.rows))
            keep = _advance(lm, batch.rows.tolist(), tokens.tolist(), generated, finish, sampling,
                            stop_window, limits)
            if not keep:
                break
            logits = batch.step(batch.keep(keep, tokens, cache), cache)
    return [_result(lm, generated[r], finish[r], sampling) for r in range(n_rows)]


class _Uniforms:
    """One seeded CPU generator per row, read in chunks of UNIFORM_CHUNK: the same stream as
    drawing all numbers at once (CPU uniform draws are sequential), in bounded memory."""

    def __init__(self, seeds: list[int], steps: int):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.steps, self.chunk = steps, None

    def at(self, step: int, rows):
        """Each row's uniform number for `step` (rows: original row indices, a CPU tensor)."""
        import torch

        if step % UNIFORM_CHUNK == 0:
            size = min(UNIFORM_CHUNK, self.steps - step)
            self.chunk = torch.stack([torch.rand(size, generator=g, dtype=torch.float64) for g in self.generators])
        return self.chunk[rows, step % UNIFORM_CHUNK]


class _Batch:
    """The running batch: which original row sits in each batch position, the attention mask
    (preallocated to the full length) and each position's next position id."""

    def __init__(self, lm: LoadedModel, prompt_mask, next_pos, max_new: int):
        import torch

        self.lm, self.size, self.length = lm, prompt_mask.shape[0], prompt_mask.shape[1]
        self.mask = torch.ones((self.size, self.length + max_new), dtype=prompt_mask.dtype, device=lm.device)
        self.mask[:, :self.length] = prompt_mask
        self.next_pos, self.rows = next_pos, torch.arange(self.size)

    def keep(self, positions: list[int], tokens, cache):
        """Only `positions` (ascending) run on; returns their next input tokens. Finished rows
        leave the batch: running rows from its end move into their places, so that only the
        moved rows' cache is copied (not the whole cache, as transformers' cache does)."""
        import torch

        n = len(positions)
        if n == self.size:
            return tokens
        index = list(range(n))
        movers = (p for p in positions if p >= n)
        kept = set(positions)
        for hole in (p for p in range(n) if p not in kept):
            index[hole] = next(movers)
        cpu_index = torch.tensor(index)
        on_dev = cpu_index.to(self.lm.device)
        cache.batch_select_indices(on_dev)
        self.mask, self.next_pos = self.mask[on_dev], self.next_pos[on_dev]
        self.rows, self.size = self.rows[cpu_index], n
        return tokens[on_dev.to(tokens.device)]

    def step(self, tokens, cache):
        """One forward pass with one new token per row; the last-position logits."""
        self.length += 1
        logits = self.lm.model(input_ids=tokens.unsqueeze(1), attention_mask=self.mask[:, :self.length],
                               position_ids=self.next_pos.unsqueeze(1), use_cache=True,
                               **{self.lm.cache_kwarg: cache}).logits[:, -1, :]
        self.next_pos = self.next_pos + 1
        return logits


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


def _prefill(lm: LoadedModel, prompts: list[list[int]], input_ids, mask, position_ids, capacity: int):
    """(cache, the last-position logits of every row after its prompt). Samples of one prompt
    sit side by side in a batch: each distinct prompt is prefilled once and its cache rows copied
    (a 4-shot prompt's prefill costs more than its 80 new tokens). The cache is a `SlotCache`
    of `capacity` tokens per row when the model's layers are plain attention layers, else
    transformers' DynamicCache (sliding-window or linear-attention layers)."""
    import torch
    from transformers import DynamicCache

    from w2s.generation.hf_cache import SlotCache, plain_attention  # imports transformers: only when decoding

    distinct: dict[tuple, int] = {}   # prompt -> its position among the prefilled rows
    first_rows, copies = [], []
    for r, p in enumerate(prompts):
        if distinct.setdefault(tuple(p), len(first_rows)) == len(first_rows):
            first_rows.append(r)
        copies.append(distinct[tuple(p)])
    slots = plain_attention(lm.model)
    per_pass = max(1, PREFILL_TOKENS // input_ids.shape[1]) if slots else len(first_rows)
    cache, logits = None, None
    for start in range(0, len(first_rows), per_pass):
        rows = torch.tensor(first_rows[start:start + per_pass], device=lm.device)
        part = DynamicCache(config=lm.model.config)
        out = lm.model(input_ids=input_ids[rows], attention_mask=mask[rows], position_ids=position_ids[rows],
                       use_cache=True, logits_to_keep=1, **{lm.cache_kwarg: part}).logits[:, -1, :]
        targets = [r for r, c in enumerate(copies) if start <= c < start + len(rows)]
        local = torch.tensor([copies[r] - start for r in targets], device=lm.device)
        if not slots:  # one pass over every distinct prompt: copy its rows, as transformers' cache does
            part.batch_select_indices(local)
            return part, out[local]
        if cache is None:
            cache, logits = SlotCache.like(part, len(prompts), capacity), out.new_empty((len(prompts), out.shape[-1]))
        on_dev = torch.tensor(targets, device=lm.device)
        cache.put(on_dev, part, local)
        logits[on_dev] = out[local]
    return cache, logits


def pick_tokens(logits, sampling: SamplingConfig, uniforms):
    """Next token per row: argmax when greedy; otherwise temperature / top-k / top-p and an
    inverse-CDF draw with each row's own uniform number (no shared RNG state) over the
    probabilities sorted in descending order."""
    import torch

    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if sampling.temperature != 1.0:  # x / 1.0 == x: one pass over the logits saved
        logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    ranked, order = _sorted_values(probs), None
    if ranked is None:
        ranked, order = probs.sort(dim=-1, descending=True)
    sorted_p = ranked
    if sampling.top_p < 1.0:
        mass_before = sorted_p.cumsum(dim=-1) - sorted_p
        sorted_p = sorted_p.masked_fill(mass_before >= sampling.top_p, 0.0)
    cdf = sorted_p.cumsum(dim=-1)
    target = (uniforms.to(cdf.device, cdf.dtype) * cdf[:, -1]).unsqueeze(1)
    j = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    if order is not None:
        return order.gather(1, j).squeeze(1)
    return _token_at_rank(probs, ranked, j)


def _sorted_values(probs):
    """Each row's probabilities in descending order, by numpy's vectorized sort of the values
    alone (on CPU `torch.sort` with indices costs more than the toy models' forward pass);
    None on GPU or when a value is NaN (then `torch.sort` decides; probabilities are never inf)."""
    import numpy as np
    import torch

    if probs.device.type != "cpu":
        return None
    ranked = torch.from_numpy(np.ascontiguousarray(np.sort(probs.numpy(), axis=-1)[:, ::-1]))
    return None if bool(ranked[:, 0].isnan().any()) else ranked  # numpy sorts NaN last: first here


def _token_at_rank(probs, ranked, j):
    """The token at rank `j` of each row's descending order: the one token with that
    probability, or where several share it, the one `torch.sort` puts there."""
    same = probs == ranked.gather(1, j)
    tokens = same.byte().argmax(dim=-1)
    tied = (same.sum(dim=-1) > 1).nonzero().squeeze(1)
    if len(tied):
        order = probs[tied].sort(dim=-1, descending=True).indices
        tokens[tied] = order.gather(1, j[tied]).squeeze(1)
    return tokens


def _advance(lm: LoadedModel, rows: list[int], tokens: list[int], generated, finish,
             sampling: SamplingConfig, stop_window: int, limits: list[int]) -> list[int]:
    """Append each row's new token, mark finished rows; returns the positions (in `rows`) of
    the rows still running."""
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
