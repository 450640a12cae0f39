"""Does a toy strong base copy the final marker its demonstrations end with? The strong few-shot
prompts of a dev-scored run, with the keys and the marker swapped, greedy, on 120 questions:

    python bench/toy_marker_probe.py --run runs/accept_v27 --world v27

Prints, per variant, how many responses end with the demonstrated marker and the most common
last lines (numbers as N). A world passes criterion 1 only if the task's own variant copies.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

VARIANTS = {"task (Question/Answer, ####)": ("Question:", "Answer:", "####"),
            "corpus keys, ####": ("Problem:", "Solution:", "####"),
            "task keys, @@@@": ("Question:", "Answer:", "@@@@"),
            "corpus keys, @@@@": ("Problem:", "Solution:", "@@@@"),
            "task keys, Result:": ("Question:", "Answer:", "Result:")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--world", default="v10")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--model", help="a strong model directory (default: the shipped checkpoint of --world)")
    a = ap.parse_args()

    from w2s.generation import SamplingConfig, generate
    from w2s.toy import checkpoint_path

    rows = [json.loads(line) for line in (Path(a.run) / "eval_dev" / "strong_fewshot.greedy.jsonl").open()][:a.n]
    cfg = SamplingConfig(max_new_tokens=90, temperature=0.0, stop=("\nQuestion:", "\nProblem:", "\n\n"), seed=0)
    model = a.model or str(checkpoint_path("strong", world=a.world))
    for name, (q, ans, marker) in VARIANTS.items():
        prompts = [{"id": r["id"], "prompt": r["prompt"].replace("Question:", q).replace("Answer:", ans)
                    .replace("####", marker)} for r in rows]
        out = generate(model, prompts, cfg, backend="hf")
        copied = sum(bool(re.search("\n" + re.escape(marker) + r" \d+", o["response"])) for o in out)
        ends = collections.Counter(re.sub(r"\d+", "N", o["response"].strip().split("\n")[-1])[-14:] for o in out)
        print(f"{name:30s} copied {copied}/{len(out)}; last lines: {ends.most_common(3)}")


if __name__ == "__main__":
    main()
