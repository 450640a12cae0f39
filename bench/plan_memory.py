"""`w2s plan`'s training-memory estimate against a measured peak, on CPU.

    python bench/plan_memory.py [--out bench/results/plan_memory.json]

A random-init Llama large enough that weights, gradients, AdamW state and activations dwarf the
process's own footprint (hidden 768, 8 layers: ~60M parameters) is fine-tuned for a few steps,
full and with LoRA, each in a fresh process. Measured: the process's peak resident memory
during training (sampled every 5 ms) minus its resident memory just before (imports, tokenizer
and data included there). Estimated: `w2s.plan.plan_training`'s per-device training peak for the
same settings (weights + trainable state + activations + logits). On CPU nothing is sharded
and the weights are float32. The ratio measured / estimated is what the note quotes; on a GPU
(bench/gpu_check.sh) torch.cuda.max_memory_allocated replaces the sampled resident set.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = dict(hidden_size=768, num_layers=8, num_heads=12, vocab_size=8000)
SEQ, BATCH, STEPS = 256, 8, 3


def child(mode: str, workdir: str) -> None:
    """One training run; prints {"before", "peak"} in bytes."""
    from w2s.tiny_models import build_tiny_model
    from w2s.training import LoraSettings, SFTSettings, train_sft

    texts = [f"Question: what is {i} plus {i + 1}? Answer: {i} + {i + 1} = {2 * i + 1}. " * 12 for i in range(400)]
    model = build_tiny_model(Path(workdir) / "base", texts[:200], vocab_size=SHAPE["vocab_size"],
                             hidden_size=SHAPE["hidden_size"], num_layers=SHAPE["num_layers"],
                             num_heads=SHAPE["num_heads"], seed=0)
    records = [{"id": str(i), "prompt": t[:200], "completion": t[200:]} for i, t in enumerate(texts)]
    lora = LoraSettings(r=16, alpha=32, dropout=0.0) if mode == "lora" else None
    settings = SFTSettings(max_steps=STEPS, batch_size=BATCH, max_length=SEQ, learning_rate=1e-4, save_steps=1000,
                           lora=lora, padding_free=False, packing=False)
    import gc
    import threading
    import time

    gc.collect()
    before, peak, done = rss(), [0], threading.Event()

    def sample():  # the resident set now, every 5 ms (ru_maxrss is a high-water mark since start)
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    train_sft(str(model), records, Path(workdir) / "out", settings)
    done.set()
    sampler.join()
    print(json.dumps({"before": before, "peak": peak[0], "model": str(model), "settings": settings.to_dict()}))


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def estimate(model: str, settings: dict) -> int:
    from types import SimpleNamespace

    from w2s.pipeline.dag import Work
    from w2s.plan import Devices, StagePlan, plan_training, shape_of

    row = StagePlan("sft", "train")
    work = Work("strong", "gold", job="sft", train=settings)
    cfg = SimpleNamespace(generation=SimpleNamespace(max_new_tokens=SEQ))
    data = {"tokens_per_record": SEQ, "longest_record": SEQ, "longest_question": SEQ}
    plan_training(row, work, shape_of(model), 400, data, Devices(), cfg)
    return row.train_peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/plan_memory.json")
    ap.add_argument("--child", default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workdir)
        return
    rows = []
    for mode in ("full", "lora"):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", tmp],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            m = json.loads(out)
            est = estimate(m["model"], m["settings"])
            measured = m["peak"] - m["before"]
            rows.append({"mode": mode, "measured_bytes": measured, "estimated_bytes": est,
                         "ratio_measured_over_estimated": round(measured / est, 3)})
            print(f"{mode:5} measured {measured / 1e6:8.1f} MB  estimated {est / 1e6:8.1f} MB  "
                  f"ratio {measured / est:.2f}", flush=True)
    Path(args.out).write_text(json.dumps({"shape": SHAPE, "seq": SEQ, "batch": BATCH, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
