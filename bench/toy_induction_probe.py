"""How fast does a Llama of a given size learn to copy? Trains from scratch on repeat documents only
(`corpus.repeat_doc`'s short lists, through the pretraining loop's copy steps) and prints the
loss every 50 steps; a model that copies drops to about 1 (the entropy of each list's first
copy), one that does not stays near 5:

    python bench/toy_induction_probe.py --layers 4 --hidden 128 --lr 1e-3 --steps 400
    python bench/toy_induction_probe.py --layers 4 --hidden 128 --lr 3e-3 --steps 300

docs/toy_world.md ("Why nothing is copied") has the measured table behind v13's `copy_steps`.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: 2, or 1 on a busy machine)")
    a = ap.parse_args()

    from w2s.toy.pretrain import ModelSpec, repeat_tokens, train_model
    from w2s.toy.tokenizer import toy_tokenizer

    # every step a copy step: constant lr, batches of short repeat lists (the pretraining loop itself)
    spec = ModelSpec("probe", hidden_size=a.hidden, num_layers=a.layers, num_heads=4, intermediate_size=3 * a.hidden,
                     steps=a.steps, copy_steps=a.steps, copy_lr=a.lr, copy_batch_size=a.batch,
                     copy_seq_len=a.seq_len, max_positions=max(1024, a.seq_len))
    tok = toy_tokenizer()
    train_model(spec, tok, repeat_tokens(tok, spec, seed=0), seed=0, threads=a.threads or None)


if __name__ == "__main__":
    main()
