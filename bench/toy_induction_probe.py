"""How fast does a Llama of a given size learn to copy? Trains from scratch on repeat documents only
(`corpus.repeat_doc`; short lists by default) and prints the loss every 100 steps; a model that
copies drops to about 1 (the entropy of each list's first copy), one that does not stays near 5:

    python bench/toy_induction_probe.py --layers 4 --hidden 128 --lr 1e-3 --steps 400
    python bench/toy_induction_probe.py --layers 4 --hidden 128 --lr 3e-3 --steps 300

docs/toy_world.md ("Why nothing is copied") has the measured table behind v13's `copy_steps`.
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--long-share", type=float, default=0.0, help="share of long lists (10-40 pieces, 2-4 times)")
    a = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from w2s.toy.corpus import repeat_doc
    from w2s.toy.pretrain import corpus_tokens
    from w2s.toy.tokenizer import toy_tokenizer

    tok = toy_tokenizer()
    rng = random.Random(0)
    stream = torch.cat([corpus_tokens(tok, [repeat_doc(rng, a.long_share) for _ in range(200)])
                        for _ in range(1 + a.steps * a.batch * a.seq_len // 200_000)])
    n = len(stream) // a.seq_len
    chunks = stream[: n * a.seq_len].view(n, a.seq_len)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=3 * a.hidden,
                                         num_hidden_layers=a.layers, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=max(512, a.seq_len)))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    t0 = time.time()
    for step in range(a.steps):
        x = chunks[torch.randint(0, n, (a.batch,))]
        logits = model(input_ids=x).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(tok)), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if (step + 1) % 100 == 0 or step + 1 == a.steps:
            print(f"step {step + 1}: loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
