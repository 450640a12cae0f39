"""Probe the toy world's difficulty (NOT the pipeline): plain torch SFT + greedy generation.

Measures on the test split:
  weak-ft        weak base fine-tuned on train_1 gold solutions (short SFT)
  strong-0shot   strong base, zero-shot task prompt
  strong-4shot   strong base, 4 demonstrations (gold train_1 solutions) in the task format
  gold-sft       strong base fine-tuned on train_2 gold solutions (ceiling; --gold)

    python bench/toy_probe.py [--models DIR] [--n-test 500] [--steps 300] [--gold]

DIR defaults to the shipped checkpoints (w2s.toy.checkpoint_path); pass a `w2s toy pretrain`
output directory to probe a candidate. Results go to stdout as JSON (last line).

Its SFT and generation loops are its own ON PURPOSE: a probe of the world's difficulty must not
move when the pipeline's trainers, templates or generation backends change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

from w2s.tasks import get_task
from w2s.tasks.base import seeded_rng
from w2s.toy.world import WorldConfig, make_splits


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def sft(model, tok, pairs, steps=300, batch_size=32, lr=1e-3, seed=0, log=print):
    """Plain SFT: loss on the completion tokens (+ EOS) only; AdamW, warmup + cosine."""
    torch.manual_seed(seed)
    eos = tok.eos_token_id
    data = []
    for p, c in pairs:
        pi = tok(p).input_ids
        ci = tok(c, add_special_tokens=False).input_ids + [eos]
        data.append((pi + ci, [-100] * len(pi) + ci))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g).tolist()
    model.train()
    t0 = time.time()
    pos = 0
    for step in range(steps):
        if pos + batch_size > len(order):
            order = torch.randperm(len(data), generator=g).tolist()
            pos = 0
        batch = [data[i] for i in order[pos:pos + batch_size]]
        pos += batch_size
        L = max(len(x) for x, _ in batch)
        ids = torch.full((len(batch), L), tok.pad_token_id)
        lab = torch.full((len(batch), L), -100)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        for j, (x, y) in enumerate(batch):
            ids[j, :len(x)] = torch.tensor(x)
            lab[j, :len(y)] = torch.tensor(y)
            att[j, :len(x)] = 1
        warm = max(1, steps // 10)
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for gr in opt.param_groups:
            gr["lr"] = lr * f
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0:
            log(f"  sft step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


class _StopOnBlankLine:
    """Per-sequence stop when the last two tokens are newlines (the model starts a new item)."""

    def __init__(self, nl_id: int):
        self.nl = nl_id

    def __call__(self, input_ids, scores, **kw):
        return (input_ids[:, -1] == self.nl) & (input_ids[:, -2] == self.nl)


@torch.no_grad()
def generate(model, tok, prompts, max_new_tokens=128, batch_size=50):
    from transformers import StoppingCriteriaList

    tok.padding_side = "left"
    nl = tok.convert_tokens_to_ids("\n")
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             stopping_criteria=StoppingCriteriaList([_StopOnBlankLine(nl)]))
        out += tok.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
    return out


def accuracy(task, responses, rows):
    return sum(task.is_correct(r, row["answer"]) for r, row in zip(responses, rows)) / len(rows)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=None, help="directory with weak/ and strong/ (default: shipped)")
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--steps", type=int, default=300, help="SFT steps (batch 32)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--shots", default="4", help="comma list, e.g. 2,4")
    ap.add_argument("--gold", action="store_true", help="also the gold-SFT ceiling (slow)")
    ap.add_argument("--skip", default="", help="comma list of probes to skip: weak,zero,few")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--show", type=int, default=2, help="example responses to print per probe")
    ap.add_argument("--max-steps", type=int, default=None, help="world difficulty (default: WorldConfig)")
    ap.add_argument("--max-distractors", type=int, default=None)
    ap.add_argument("--demo-world", action="store_true",
                    help="the demo's world (w2s.demo.DEMO_WORLD), decontaminated like the demo's data")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.models:
        paths = {w: os.path.join(a.models, w) for w in ("weak", "strong")}
    else:
        from w2s.toy import checkpoint_path

        paths = {w: str(checkpoint_path(w)) for w in ("weak", "strong")}
    task = get_task("toy")
    knobs = {k: v for k, v in (("max_steps", a.max_steps), ("max_distractors", a.max_distractors)) if v is not None}
    exclude = None
    if a.demo_world:
        from w2s.demo import DEMO_WORLD
        from w2s.toy.pretrain import corpus_signatures

        knobs, exclude = {**DEMO_WORLD, **knobs}, corpus_signatures(seed=0)
    splits = make_splits(a.seed, config=WorldConfig(**knobs), exclude=exclude)
    test = splits["test"][:a.n_test]
    skip = set(filter(None, a.skip.split(",")))
    res = {"models": a.models or "shipped", "n_test": len(test), "sft_steps": a.steps, "world": knobs,
           "decontaminated": exclude is not None}

    def report(name, responses, t0):
        acc = accuracy(task, responses, test)
        res[name] = round(acc, 3)
        res[name + "_s"] = round(time.time() - t0, 1)
        print(f"{name}: {acc:.3f} ({time.time() - t0:.0f}s)", flush=True)
        for r, row in list(zip(responses, test))[:a.show]:
            print(f"   gold {row['answer']} | {r!r}"[:300])

    zero_prompts = [task.prompt(r["question"]) for r in test]
    if "weak" not in skip:
        t0 = time.time()
        model, tok = load(paths["weak"])
        pairs = [(task.prompt(r["question"]), task.completion(" " + r["solution"])) for r in splits["train_1"]]
        sft(model, tok, pairs, steps=a.steps, lr=a.lr)
        report("weak_ft", generate(model, tok, zero_prompts), t0)
    if {"zero", "few"} <= skip and not a.gold:
        print(json.dumps(res))
        return res
    model, tok = load(paths["strong"])
    if "zero" not in skip:
        t0 = time.time()
        report("strong_zero_shot", generate(model, tok, zero_prompts), t0)
    for shots in ([] if "few" in skip else [int(k) for k in a.shots.split(",")]):
        t0 = time.time()
        demos_pool = splits["train_1"]
        prompts = []
        for r in test:
            rng = seeded_rng(0, "probe-demos", r["id"])
            demos = rng.sample(demos_pool, shots)
            prompts.append(task.fewshot_prompt([(d["question"], d["solution"]) for d in demos], r["question"]))
        report(f"strong_{shots}shot", generate(model, tok, prompts, batch_size=25), t0)
    if a.gold:
        t0 = time.time()
        pairs = [(task.prompt(r["question"]), task.completion(" " + r["solution"])) for r in splits["train_2"]]
        sft(model, tok, pairs, steps=a.steps, lr=a.lr / 2)
        report("gold_sft", generate(model, tok, zero_prompts), t0)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
