"""The hf decode loop (preallocated KV cache, finished rows swapped out, value-only sort in
sampling, shared prefill) gives exactly the tokens of the straightforward loop it replaced:
transformers' growing cache, finished rows dropped by copying the cache, `torch.sort`."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from w2s.generation import SamplingConfig
from w2s.generation import hf as hf_backend
from w2s.generation import hf_decode
from w2s.tasks import get_task
from w2s.toy import checkpoint_path
from w2s.toy.world import make_splits


def reference_pick(logits, sampling, uniforms):
    """The sampling step as it was: temperature, top-k, top-p, inverse CDF over `torch.sort`."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    sorted_p, sorted_idx = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    if sampling.top_p < 1.0:
        sorted_p = sorted_p.masked_fill(sorted_p.cumsum(dim=-1) - sorted_p >= sampling.top_p, 0.0)
    cdf = sorted_p.cumsum(dim=-1)
    j = torch.searchsorted(cdf, (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(1), right=True)
    return sorted_idx.gather(1, j.clamp(max=cdf.shape[-1] - 1)).squeeze(1)


def reference_decode(lm, prompts, seeds, sampling):
    """The decode loop as it was: DynamicCache grown by concatenation, each distinct prompt
    prefilled once and its cache rows copied, finished rows dropped from the cache at once."""
    from transformers import DynamicCache

    limits = [min(sampling.max_new_tokens, lm.context - len(p)) for p in prompts]
    input_ids, mask, position_ids = hf_decode._left_padded(lm, prompts)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    uniforms = torch.stack([torch.rand(max(limits), generator=g, dtype=torch.float64) for g in gens])
    window = max((len(s.encode()) for s in sampling.stop), default=0) + 4
    generated, finish, rows = [[] for _ in prompts], [None] * len(prompts), torch.arange(len(prompts))
    cache, firsts = DynamicCache(config=lm.model.config), {}
    copy_of = torch.tensor([firsts.setdefault(tuple(p), r) for r, p in enumerate(prompts)])
    first = torch.tensor(sorted(set(copy_of.tolist())))
    with torch.inference_mode():
        logits = lm.model(input_ids=input_ids[first], attention_mask=mask[first], position_ids=position_ids[first],
                          use_cache=True, logits_to_keep=1, **{lm.cache_kwarg: cache}).logits[:, -1, :]
        at = torch.searchsorted(first, copy_of)  # row -> its prompt's position among the prefilled rows
        cache.batch_select_indices(at)
        logits, next_pos = logits[at], position_ids[:, -1] + 1
        for step in range(max(limits)):
            tokens = reference_pick(logits, sampling, uniforms[rows, step])
            keep = hf_decode._advance(lm, rows.tolist(), tokens.tolist(), generated, finish, sampling, window,
                                      limits)
            if not keep:
                break
            idx = torch.tensor(keep)
            cache.batch_select_indices(idx)
            mask, next_pos, tokens, rows = mask[idx], next_pos[idx], tokens[idx], rows[idx]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits = lm.model(input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=next_pos.unsqueeze(1),
                              use_cache=True, **{lm.cache_kwarg: cache}).logits[:, -1, :]
            next_pos = next_pos + 1
    return [hf_decode._result(lm, generated[r], finish[r], sampling) for r in range(len(prompts))]


@pytest.fixture(scope="module")
def toy():
    """The shipped strong toy model and 30 prompts: zero-shot, 2-shot (longer), and repeats of
    one prompt (the k samples of a prompt share its prefill). One torch thread: on a shared
    machine, threads waiting for each other make these tests 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lm = hf_backend.load_model(str(checkpoint_path("strong")), dtype="float32", device="cpu")
    task, splits = get_task("toy"), make_splits(seed=3, sizes={"test": 26, "train_1": 20, "train_2": 0})
    rng = random.Random(0)
    texts = [task.prompt(q["question"]) for q in splits["test"][:20]]
    texts += [task.fewshot_prompt([(d["question"], d["solution"]) for d in rng.sample(splits["train_1"], 2)],
                                  q["question"]) for q in splits["test"][20:]]
    texts += [texts[3]] * 3 + [texts[22]]
    yield lm, task, hf_backend.encode_prompts(lm, texts)
    torch.set_num_threads(threads)


SAMPLINGS = {"greedy": dict(), "t1": dict(temperature=1.0), "top_p_top_k": dict(temperature=0.8, top_p=0.9, top_k=40)}


@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_decode_equals_the_reference_loop(toy, name):
    lm, task, prompts = toy
    sampling = SamplingConfig(max_new_tokens=40, stop=(*task.stop, "\nStep 3", " 2 "), **SAMPLINGS[name])
    seeds = list(range(100, 100 + len(prompts)))
    new = hf_decode.decode_batch(lm, prompts, seeds, sampling)
    assert new == reference_decode(lm, prompts, seeds, sampling)
    early = [r["n_tokens"] for r in new if r["finish_reason"] == "stop"]
    assert len(set(early)) >= 5 and len(early) < len(new)  # rows leave the batch at many different steps


def test_decode_with_a_small_prefill_pass_and_eos(toy, monkeypatch):
    """Prefill split over several passes, and an EOS id the model emits: same tokens."""
    lm, task, prompts = toy
    sampling = SamplingConfig(max_new_tokens=20, temperature=1.0, stop=task.stop)
    seeds = list(range(len(prompts)))
    get = lm.tokenizer(" get", add_special_tokens=False)["input_ids"]
    as_eos = dataclasses.replace(lm, eos_ids=lm.eos_ids | frozenset(get))  # "... to get 61": ends many rows
    monkeypatch.setattr(hf_decode, "PREFILL_TOKENS", 100)
    new = hf_decode.decode_batch(as_eos, prompts, seeds, sampling)
    assert new == reference_decode(as_eos, prompts, seeds, sampling)
    assert sum(r["response"].endswith(" to") for r in new) >= 3


def test_value_sort_picks_the_tokens_of_torch_sort(toy):
    """Ties (quantized logits), top-k zeros, and a uniform that rounds to 1.0 (the draw lands
    on the least likely token, among many equal ones): same token as `torch.sort` gives."""
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        logits = torch.randn(32, (976, 50, 3000)[trial % 3], generator=g) * (0.5, 3, 10)[trial % 3]
        if trial % 2:
            logits = (logits * 2).round() / 2
        u = torch.rand(32, generator=g, dtype=torch.float64)
        u[:6] = 1 - 1e-12
        for kw in SAMPLINGS.values():
            s = SamplingConfig(max_new_tokens=1, **{"temperature": 1.0, **kw, "top_k": kw.get("top_k", 5 * (trial % 2))})
            assert torch.equal(hf_decode.pick_tokens(logits, s, u), reference_pick(logits, s, u))


def test_token_budget_batches():
    """A batch holds rows * (longest prompt + new tokens) <= budget: 4-shot-long prompts make
    small batches, zero-shot-short ones big ones; a row limit, when given, caps both."""
    lengths = [350] * 100 + [40] * 600
    assert [len(b) for b in hf_backend.length_sorted_batches(lengths, None, 32768, 80)] == [76, 76, 273, 273, 2]
    assert {len(b) for b in hf_backend.length_sorted_batches(lengths, 32, 32768, 80)} == {32, 28}
