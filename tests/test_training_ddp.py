"""The same `w2s train` command under a 2-process distributed launch (CPU, gloo): the run
completes, both ranks train together (world_size 2) and exactly one model is saved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from w2s.io import write_jsonl


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_cpu_ddp_sft(tiny_model, tmp_path):
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate CLI not on PATH")
    data = tmp_path / "sft.jsonl"
    write_jsonl(data, [{"id": str(i), "prompt": f"Question: What is {i} plus 2?\nAnswer:",
                        "completion": f" {i + 2}"} for i in range(16)])
    out = tmp_path / "ddp"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    # On a machine without GPUs, accelerate's --multi_gpu launcher (torchrun) + our use_cpu
    # gives DDP over gloo (`--cpu` alone starts ONE process unless mpirun is configured).
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "w2s", "train", "sft", "--model", str(tiny_model), "--data", str(data), "--out", str(out),
           "--max-steps", "3", "--batch-size", "2", "--max-length", "64", "--lr", "1e-3", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["complete"] is True       # rank 0 reports
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["world_size"] == 2 and lineage["global_step"] == 3
    assert (out / "DONE").exists()
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert not (out / "checkpoints").exists() and not list(out.glob(".adapter*"))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out), use_safetensors=True)
