"""Tiny, locally built Hugging Face models for tests, benchmarks and CPU examples.

No hub access: a byte-level BPE tokenizer is trained on the given texts and a
random-init `LlamaForCausalLM` is saved beside it (safetensors). Every backend and
trainer sees an ordinary model directory, exactly as it would see a hub model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Train a small byte-level BPE tokenizer and wrap it as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL["pad_token"], SPECIAL["bos_token"], SPECIAL["eos_token"], SPECIAL["unk_token"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.padding_side = "left"
    return fast


def build_tiny_model(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 512,
                     hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     intermediate_size: int | None = None, max_positions: int = 2048,
                     seed: int = 0) -> Path:
    """Save a random-init Llama-architecture model + tokenizer to `out_dir`; returns the path."""
    out = Path(out_dir)
    tokenizer = build_tokenizer(texts, vocab_size)
    model = random_llama(tokenizer, hidden_size=hidden_size, intermediate_size=intermediate_size or 2 * hidden_size,
                         num_layers=num_layers, num_heads=num_heads, max_positions=max_positions, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "w2s_tiny.json").write_text(json.dumps({"seed": seed, "vocab_size": len(tokenizer),
                                                   "hidden_size": hidden_size, "num_layers": num_layers}))
    return out


def random_llama(tokenizer, *, hidden_size: int, intermediate_size: int, num_layers: int, num_heads: int,
                 max_positions: int, seed: int, tie_embeddings: bool = True, **config_extra):
    """A random-init `LlamaForCausalLM` sized by the arguments, its special tokens the
    tokenizer's (the one builder for tiny models and the toy world's base models)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_embeddings, **config_extra)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    gc = model.generation_config
    gc.pad_token_id, gc.eos_token_id, gc.bos_token_id = (tokenizer.pad_token_id, tokenizer.eos_token_id,
                                                         tokenizer.bos_token_id)
    return model


def parse_tiny_spec(spec: str) -> dict:
    """`tiny:layers=2,hidden=64,steps=300,seed=0` -> build options (for CPU example configs)."""
    if not spec.startswith("tiny:"):
        raise ValueError(f"not a tiny model spec: {spec!r}")
    known = {"layers": int, "hidden": int, "heads": int, "vocab": int, "steps": int, "seed": int,
             "lr": float, "batch": int, "seq_len": int}
    out = {}
    for part in filter(None, spec[5:].split(",")):
        k, _, v = part.partition("=")
        if k not in known:
            raise ValueError(f"tiny spec {spec!r}: unknown option {k!r} (known: {', '.join(known)})")
        try:
            out[k] = known[k](v)
        except ValueError:
            raise ValueError(f"tiny spec {spec!r}: {k} expects {known[k].__name__}, got {v!r}") from None
        least = {"steps": 0, "seed": 0}.get(k, 1)  # sizes count something; steps=0 skips pretraining
        bad = not out[k] > 0 if k == "lr" else out[k] < least  # written so that NaN is bad too
        if bad:
            raise ValueError(f"tiny spec {spec!r}: {k} must be {'> 0' if k == 'lr' else f'>= {least}'}, got {v}")
    hidden, heads = out.get("hidden", 64), out.get("heads", 4)
    if hidden % heads:
        raise ValueError(f"tiny spec {spec!r}: hidden ({hidden}) must be a multiple of heads ({heads})")
    return out


def pretrain_tiny(model_dir: str | Path, texts: list[str], *, steps: int = 200, lr: float = 3e-3,
                  batch: int = 16, seq_len: int = 256, seed: int = 0) -> None:
    """A short causal-LM pretraining pass (plain torch loop) so a tiny model writes text of the
    task's kind instead of noise. Overwrites the weights in `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    ids: list[int] = []
    for t in texts:
        ids.extend(tok(t).input_ids + [tok.eos_token_id])
    data = torch.tensor(ids)
    n_blocks = max(1, len(data) // seq_len)
    data = data[: n_blocks * seq_len].view(n_blocks, seq_len)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_blocks, (min(batch, n_blocks),), generator=g)
        x = data[idx]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)


def build_from_spec(spec: str, out_dir: str | Path, texts: list[str]) -> Path:
    o = parse_tiny_spec(spec)
    path = build_tiny_model(out_dir, texts, vocab_size=o.get("vocab", 512), hidden_size=o.get("hidden", 64),
                            num_layers=o.get("layers", 2), num_heads=o.get("heads", 4), seed=o.get("seed", 0))
    if o.get("steps", 0) > 0:
        pretrain_tiny(path, texts, steps=o["steps"], lr=o.get("lr", 3e-3), batch=o.get("batch", 16),
                      seq_len=o.get("seq_len", 256), seed=o.get("seed", 0))
    return path
