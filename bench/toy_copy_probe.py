"""Does a toy base model copy from earlier in its context at all? Two probes, no run needed:

    python bench/toy_copy_probe.py --world v19 --which strong
    python bench/toy_copy_probe.py --model runs/pt13/strong

* repeats: a random list of 30 world pieces written twice; the mean probability of each token of
  the second copy (a model that copies puts most of its mass there) against the first;
* documents: held-out corpus-style problem documents keyed by nonsense words (`Kovofo:`) and
  ending with a document-only marker (`@@@@ N`, `Bavolu: N`); the probability of the solution
  key and of the marker's first token at problem 1 (nothing to copy) and problems 2-4 (copyable).
  Uniform over the 64 nonsense words is 0.016.

A model that copies shows second copy >> first copy and problems 2-4 >> problem 1.
"""

from __future__ import annotations

import argparse
import random
import statistics

PROBLEMS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model directory (default: the shipped checkpoint of --world/--which)")
    ap.add_argument("--world", default="v19", help="world whose corpus formats the documents")
    ap.add_argument("--which", default="strong")
    ap.add_argument("--docs", type=int, default=100)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from w2s.toy import checkpoint_path
    from w2s.toy.corpus import NOVEL_WORDS, REPEAT_PIECES, _problem_format, render_problem
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.world import base_version, sample_problem

    path = a.model or str(checkpoint_path(a.which, world=a.world))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()

    def probs(ids):
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0].softmax(-1)

    rng = random.Random("toy-copy-probe:0")
    first, second = [], []
    for _ in range(30):
        words = " ".join([str(rng.randint(0, 99))] + [rng.choice(REPEAT_PIECES) for _ in range(29)])
        once = tok(words, add_special_tokens=False).input_ids
        ids = [tok.bos_token_id] + once + tok("\n" + words, add_special_tokens=False).input_ids
        p = probs(ids)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        first.append(p[1:len(once)].mean().item())
        second.append(p[len(once) + 2:].mean().item())
    print(f"{path}\nrepeats: P(token) first copy {statistics.mean(first):.3f}, second copy {statistics.mean(second):.3f}")

    def p_next(prefix: str, target: str) -> float:
        ids = tok(prefix).input_ids
        t = tok(prefix + target).input_ids[len(ids)]
        return probs(ids)[-1, t].item()

    recipe = RECIPES[base_version(a.world, a.which)]   # the corpus the probed model read
    key, marker = [[] for _ in range(PROBLEMS)], [[] for _ in range(PROBLEMS)]
    for _ in range(a.docs):
        fmt = _problem_format(rng, recipe)
        q, ans, f = rng.sample(NOVEL_WORDS, 3)
        fmt.update(q_key=q + ":", a_key=ans + ":", key_sep=" ", final_sep="\n",
                   final=rng.choice([f + ": {a}", "@@@@ {a}", "%%% {a}", "&&&&& {a}"]))
        text = ""
        for k in range(PROBLEMS):
            p = render_problem(sample_problem(rng, recipe.world), fmt, rng)
            key[k].append(p_next(text + p.split("\n", 1)[0] + "\n", fmt["a_key"]))
            marker[k].append(p_next(text + p.rsplit("\n", 1)[0] + "\n", fmt["final"].split("{a}")[0]))
            text += p + "\n\n"
    for name, rows in (("solution key", key), ("final marker", marker)):
        print(f"{name}: P at problem 1..{PROBLEMS}: " + ", ".join(f"{statistics.mean(r):.3f}" for r in rows))


if __name__ == "__main__":
    main()
