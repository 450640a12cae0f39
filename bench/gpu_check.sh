#!/usr/bin/env bash
# The vllm backend on a GPU machine (issue 14). Needs one NVIDIA GPU and, from the repository root:
#     pip install -e ".[dev,vllm]"          # the current vLLM with its CUDA torch
#     bash bench/gpu_check.sh [OUT]         # ~10 minutes on one H100/H200; OUT=runs/gpu_check
# Checks, printing one PASS/FAIL line each and writing OUT/gpu_check.json:
#   1. vLLM (bf16) on a locally built ~0.5B random-init Llama (no hub): hf vs vllm tokens/s
#      on 1000 toy prompts, 256 new tokens (random weights: every sequence runs to the limit);
#   2. GPU memory is back at the baseline after a vllm call (the engine process exits);
#   3. keep_engines(): greedy + 8 samples on one engine, one start;
#   4. the whole method with LoRA SFT and DPO/ORPO through the pipeline, generation on vLLM
#      (bf16), GPU memory sampled every second: back at the baseline after every stage.
set -euo pipefail
OUT=${1:-runs/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
BASE=$(mem)
echo "baseline GPU memory: ${BASE} MiB"
python -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" | tee "$OUT/versions.txt"

# Data and the ~0.5B model (16 layers x 1536 hidden, 12 heads; tokenizer from toy questions).
[ -f "$OUT/data/world.json" ] || w2s toy data --out "$OUT/data" --n-test 1000
[ -f "$OUT/model/config.json" ] || python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from w2s.tiny_models import build_tiny_model
out = Path(sys.argv[1])
texts = [json.loads(line)["question"] for line in open(out / "data" / "train_1.jsonl")]
build_tiny_model(out / "model", texts, vocab_size=1024, hidden_size=1536, num_layers=16, num_heads=12,
                 intermediate_size=4096, seed=0)
import safetensors.torch as st
n = sum(t.numel() for t in st.load_file(str(out / "model" / "model.safetensors")).values())
print(f"built {n / 1e6:.0f}M parameters")
EOF

# 1 + 2: hf vs vllm, bf16, one call each (fixed costs included), memory after the vllm call.
for b in hf vllm; do
  rm -f "$OUT/gen_$b.jsonl"
  w2s generate -t toy -m "$OUT/model" -i "$OUT/data/test.jsonl" -o "$OUT/gen_$b.jsonl" -b "$b" \
      --dtype bfloat16 --batch-size 256 --max-new-tokens 256 -q --json | tail -1 > "$OUT/gen_$b.json"
done
AFTER=$(mem)
python - "$OUT" "$BASE" "$AFTER" <<'EOF'
import json, sys
out, base, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = {b: json.load(open(f"{out}/gen_{b}.json")) for b in ("hf", "vllm")}
tps = {b: r[b]["tokens"] / r[b]["seconds"] for b in r}
print(f"tokens/s (whole call): hf {tps['hf']:.0f}, vllm {tps['vllm']:.0f} ({tps['vllm'] / tps['hf']:.1f}x)")
print(("PASS" if r["vllm"]["records"] == 1000 else "FAIL") + ": vllm generated 1000 records in bf16")
print(("PASS" if after - base < 1024 else "FAIL") + f": GPU memory after the vllm call {after} MiB (baseline {base})")
json.dump({"tokens_per_s": tps, "calls": r, "mem_after_vllm_mib": after, "mem_baseline_mib": base},
          open(f"{out}/gpu_check.json", "w"), indent=2)
EOF

# 3: one engine for greedy + k samples.
python - "$OUT" <<'EOF'
import json, sys, time
from w2s.generation import SamplingConfig, generate, keep_engines
from w2s.generation import vllm as v
out = sys.argv[1]
prompts = [{"id": r["id"], "prompt": f"Question: {r['question']}\nAnswer:"}
           for r in map(json.loads, open(f"{out}/data/test.jsonl"))][:200]
t = time.perf_counter()
with keep_engines():
    g = generate(f"{out}/model", prompts, SamplingConfig(max_new_tokens=64), backend="vllm", progress=False,
                 dtype="bfloat16")
    s = generate(f"{out}/model", prompts, SamplingConfig(max_new_tokens=64, temperature=1.0, n=8), backend="vllm",
                 progress=False, dtype="bfloat16")
    engines = len(v._kept)
print(("PASS" if engines == 1 and len(g) == 200 and len(s) == 1600 else "FAIL")
      + f": greedy + 8 samples on {engines} engine(s) in {time.perf_counter() - t:.0f}s")
EOF

# 4: the whole method, LoRA strong model, generation on vLLM in bf16, memory sampled every second.
python - "$OUT" <<'EOF'
import sys, yaml
from pathlib import Path
from w2s.toy.demo import demo_config
out = Path(sys.argv[1])
cfg = demo_config(out / "data", quick=True)
cfg["generation"] = {**cfg["generation"], "backend": "vllm", "options": {"dtype": "bfloat16"}}
cfg["strong"]["lora"] = {"r": 16, "alpha": 32}
(out / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
EOF
( while true; do echo "$(date +%s),$(mem)"; sleep 1; done ) > "$OUT/gpu_mem.csv" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT
STATUS=PASS
w2s run "$OUT/pipeline.yaml" --out "$OUT/pipeline" || STATUS=FAIL
kill $SAMPLER
echo "$STATUS: the whole method (LoRA SFT, DPO and ORPO) with vLLM generation -> $OUT/pipeline/report.md"
python - "$OUT" "$BASE" <<'EOF'
import json, sys
out, base = sys.argv[1], int(sys.argv[2])
rows = [tuple(map(int, line.split(","))) for line in open(f"{out}/gpu_mem.csv") if line.strip()]
stages = json.load(open(f"{out}/pipeline/manifest.json"))["stages"]
leaks = []
for name, st in stages.items():
    end = st.get("finished")
    if isinstance(end, (int, float)):
        after = [m for t, m in rows if end + 2 <= t <= end + 5]
        if after and min(after) - base >= 1024:
            leaks.append((name, min(after)))
print(f"GPU memory: peak {max(m for _, m in rows)} MiB, last {rows[-1][1]} MiB, baseline {base} MiB")
print(("PASS" if rows[-1][1] - base < 1024 and not leaks else "FAIL")
      + f": memory back at the baseline after the run{'; held after ' + str(leaks) if leaks else ''}")
EOF

# 5: examples/gsm8k_llama3.yaml at the full size of one model family that fits one GPU: a
#    random-init model of Llama-3-8B's shape (~16 GB in bf16, no hub) as BOTH the weak and the
#    strong model, the real config otherwise (LoRA, vLLM in bf16, Stage I-II, every baseline) on
#    a slice of the paper's data, one process (the config's FSDP launcher needs 8 GPUs). Numbers
#    mean nothing (random weights); the point: every stage fits and runs at 8B scale on one GPU.
#    Needs the data: w2s data gsm8k --out data/gsm8k (or --from an offline copy).
if [ -f data/gsm8k/train_1.jsonl ]; then
  [ -f "$OUT/llama8b/config.json" ] || python - "$OUT" <<'EOF2'
import sys
from pathlib import Path
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from w2s.tiny_models import build_tokenizer
out = Path(sys.argv[1]) / "llama8b"
texts = [line for line in open("data/gsm8k/train_1.jsonl")][:2000]
tok = build_tokenizer(texts, vocab_size=32000)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                  rope_theta=500000.0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, torch_dtype="bfloat16")
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
print(f"built {sum(p.numel() for p in model.parameters()) / 1e9:.1f}B parameters")
EOF2
  /usr/bin/time -v w2s run examples/gsm8k_llama3.yaml --out "$OUT/llama3_8b" --quiet \
      --set weak.model="$PWD/$OUT/llama8b" --set strong.model="$PWD/$OUT/llama8b" --set launcher=null \
      --set generation.options.tensor_parallel_size=1 --set data.limit_gold=256 \
      --set data.limit_unlabeled=128 --set data.limit_test=64 --set weak.train.max_steps=20 \
      --set strong.train.max_steps=10 --set stage2.train.max_steps=5 --set eval.n=2 \
      2> "$OUT/llama3_8b.time" && echo "PASS: gsm8k_llama3.yaml at 8B scale on one GPU" \
      || echo "FAIL: gsm8k_llama3.yaml at 8B scale (see $OUT/llama3_8b/log.txt)"
  grep "Maximum resident" "$OUT/llama3_8b.time" || true
else
  echo "SKIP 5: no data/gsm8k (w2s data gsm8k --out data/gsm8k)"
fi
