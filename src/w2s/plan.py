"""What a run will cost, before it starts: per stage, the bytes it writes, the peak device memory
of its training or generation, the tokens it generates and its arithmetic; the run's disk total.

Everything is arithmetic on the config and the models' `config.json` (no weight is read):

- parameters from the architecture (embeddings, attention with grouped KV heads, gated MLP,
  untied head); LoRA's from its rank and target modules;
- a LoRA model written as an adapter (the default) costs its LoRA parameters in float32 (PEFT
  keeps adapter weights in fp32); a full or merged model its parameters in the weights' dtype;
- training memory per device: weights (sharded by FSDP / ZeRO-3), gradients and AdamW state of
  the trainable parameters (12 bytes each, +4 for an fp32 master copy under bf16 mixed precision
  of a full model; sharded by FSDP / ZeRO), and activations: ~34·s·b·h bytes per layer in 16-bit
  without recomputation, ~2·s·b·h with gradient checkpointing (Korthikanti et al., 2022,
  "Reducing Activation Recomputation in Large Transformer Models"; twice that in fp32), plus fp32
  logits b·s·V·4. Measured on CPU (bench/plan_memory.py, fp32, no sharding) the peak is 1.3x
  (full) to 2.1x (LoRA) this estimate: allocator overhead and what the trainer keeps besides;
  read it as a lower bound until a GPU measurement replaces these numbers;
- generation memory per device: the weights over tensor parallelism plus the KV cache of the
  sequences in flight (2 · layers · kv_dim · bytes per token; vLLM schedules up to 256);
- tokens: prompts from the data's mean question and solution length (4 characters a token);
  generations as max_new_tokens each (an upper bound); training records per question from the
  stage's declared `Work` (an upper bound: a selection keeps at most all questions);
- arithmetic: 2·P FLOPs per generated or prefilled token, 6·P per trained token (4·P with LoRA:
  no weight gradients of the frozen base), doubled for preference pairs (chosen and rejected) plus
  the reference's forward; time = FLOPs / a stated rate, never a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from w2s.models import adapter_base, is_adapter_dir
from w2s.steps import load_questions, make_task
from w2s.training.launch import accelerate_config, job_settings
from w2s.tiny_models import parse_tiny_spec
from w2s.training.settings import LoraSettings

#: architectures of the shipped examples' models, so a plan needs no download (from their
#: config.json on the hub: hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings)
KNOWN_SHAPES = {
    "meta-llama/Meta-Llama-3-8B": (4096, 32, 32, 8, 14336, 128256, False),
    "meta-llama/Meta-Llama-3-70B": (8192, 80, 64, 8, 28672, 128256, False),
    "meta-llama/Llama-2-7b-hf": (4096, 32, 32, 32, 11008, 32000, False),
    "meta-llama/Llama-2-70b-hf": (8192, 80, 64, 8, 28672, 32000, False),
    "Qwen/Qwen2.5-1.5B": (1536, 28, 12, 2, 8960, 151936, True),
    "Qwen/Qwen2.5-14B": (5120, 48, 40, 8, 13824, 152064, False),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHARS_PER_TOKEN = 4
MAX_SEQS_IN_FLIGHT = 256
RECORD_OVERHEAD_BYTES = 200    # a generation record's JSON fields besides its text


@dataclass(frozen=True)
class Shape:
    """A decoder's sizes, as config.json gives them."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection LoRA may target."""
        h, q, kv, f = self.hidden, self.heads * self.head_dim, self.kv_dim, self.ffn
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    @property
    def params(self) -> int:
        per_layer = sum(i * o for i, o in self.module_dims().values()) + 2 * self.hidden
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * per_layer + self.hidden

    def lora_params(self, lora: LoraSettings) -> int:
        dims = self.module_dims()
        return self.layers * sum(lora.r * (dims[m][0] + dims[m][1]) for m in lora.target_modules if m in dims)


def shape_of(model: str) -> Shape | None:
    """A model's Shape from its local config.json (an adapter's base's), the HF cache, or the
    known examples; None when none of them has it."""
    if model.startswith("tiny:"):  # w2s.tiny_models' defaults (the vocabulary is at most `vocab`)
        o = parse_tiny_spec(model)
        hidden, heads = o.get("hidden", 64), o.get("heads", 4)
        return Shape(hidden, o.get("layers", 2), heads, heads, 2 * hidden, o.get("vocab", 512), tied=True)
    path = Path(model)
    if is_adapter_dir(path):
        return shape_of(adapter_base(path))
    config = path / "config.json" if path.is_dir() else _cached_config(model)
    if config is not None and config.is_file():
        c = json.loads(config.read_text())
        c = c.get("text_config", c)
        heads = c["num_attention_heads"]
        return Shape(c["hidden_size"], c["num_hidden_layers"], heads, c.get("num_key_value_heads", heads),
                     c["intermediate_size"], c["vocab_size"], bool(c.get("tie_word_embeddings", False)))
    return Shape(*KNOWN_SHAPES[model]) if model in KNOWN_SHAPES else None


def _cached_config(model: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
        return Path(found) if isinstance(found, str) else None
    except (ImportError, ValueError):
        return None


@dataclass
class Devices:
    """How the run's work is spread: training processes and their sharding (from the
    launcher's accelerate config), generation's tensor- and data-parallel degree."""

    train_processes: int = 1
    sharding: str = "none"        # none | ddp | fsdp | zero2 | zero3
    tensor_parallel: int = 1
    data_parallel: int = 1

    @property
    def weight_shards(self) -> int:
        return self.train_processes if self.sharding in ("fsdp", "zero3") else 1

    @property
    def state_shards(self) -> int:
        return self.train_processes if self.sharding in ("fsdp", "zero2", "zero3") else 1


@dataclass
class StagePlan:
    stage: str
    kind: str
    model_bytes: int = 0          # what the stage leaves on disk (a model, generations)
    checkpoint_bytes: int = 0     # transient: the training checkpoint while it runs
    train_peak: int = 0           # bytes per training device
    gen_peak: int = 0             # bytes per generation device
    generated_tokens: int = 0
    trained_tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    stages: list[StagePlan]
    devices: Devices
    rates: dict                   # FLOP/s in all: {"train": ..., "generate": ...}
    downloads: dict               # hub model -> bytes it downloads into the HF cache
    unknown: list[str]            # models or splits the plan could not size
    measured: bool = False        # the rates are this machine's, measured (CPU), not stated

    @property
    def disk(self) -> int:
        """What the run directory needs: every stage's output, plus the largest checkpoint
        (one training stage runs at a time; its checkpoint goes when its model is complete)."""
        return sum(s.model_bytes for s in self.stages) + max((s.checkpoint_bytes for s in self.stages), default=0)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)


def plan_run(cfg, stages, *, train_tflops: float = 150.0, gen_tflops: float = 50.0, base_dir: Path = Path("."),
             done: set[str] = frozenset(), measured: bool = False) -> Plan:
    """The plan of `stages` (parts.build's) under `cfg`; stages in `done` cost nothing.
    `train_tflops` / `gen_tflops`: the stated rate per device (TFLOP/s actually reached)."""
    devices = devices_of(cfg, base_dir)
    rates = {"train": train_tflops * 1e12 * devices.train_processes,
             "generate": gen_tflops * 1e12 * devices.tensor_parallel * devices.data_parallel}
    data = data_stats(cfg)
    shapes = {role: shape_of(getattr(cfg, role).model) for role in ("weak", "strong")}
    unknown = [f"{role}.model {getattr(cfg, role).model}" for role, s in shapes.items() if s is None]
    unknown += [f"data.{split} (a hub dataset: give data.limit_{split})" for split, n in data["splits"].items()
                if n is None]
    rows = []
    for stage in stages:
        row = StagePlan(stage.name, stage.kind)
        work, shape = stage.work, shapes.get(stage.work.role) if stage.work else None
        if work is not None and shape is not None and stage.name not in done:
            n = min(data["splits"].get(work.split) or 0, work.limit or math.inf)
            if work.train is not None:
                plan_training(row, work, shape, n, data, devices, cfg)
            else:
                plan_generation(row, work, shape, n, data, cfg, devices)
            row.seconds = row.flops / rates["train" if work.train is not None else "generate"]
        rows.append(row)
    downloads = {getattr(cfg, r).model: shapes[r].params * 2 for r in ("weak", "strong")
                 if shapes[r] is not None and not Path(getattr(cfg, r).model).exists()
                 and not getattr(cfg, r).model.startswith("tiny:")}
    return Plan(rows, devices, rates, downloads, unknown, measured)


def plan_training(row: StagePlan, work, shape: Shape, n: float, data: dict, devices: Devices, cfg) -> None:
    s = job_settings({"kind": work.job, "settings": work.train})
    wbytes = 4 if s.dtype == "float32" or (s.dtype == "auto" and not s.bf16) else 2
    seq = min(s.max_length, data["tokens_per_record"])
    # the longest batch sets the peak: padded to its longest record, a generated answer at most
    # max_new_tokens long (the model-written records of Stage I-III)
    longest = min(s.max_length, max(data["longest_record"], data["longest_question"] + cfg.generation.max_new_tokens))
    records = n * work.per_question
    batch = s.per_device_train_batch_size * s.gradient_accumulation_steps * devices.train_processes
    steps = s.max_steps if s.max_steps > 0 else math.ceil(records * s.num_train_epochs / max(batch, 1))
    lora = shape.lora_params(s.lora) if s.lora is not None else 0
    trainable = lora or shape.params
    row.trained_tokens = int(steps * batch * seq)
    per_token = 4 if lora else 6
    if work.job == "preference":   # chosen and rejected, and the reference's forward of both
        row.trained_tokens *= 2
        per_token += 2
    row.flops = per_token * shape.params * row.trained_tokens
    if work.job == "grpo":         # each step samples num_generations completions per prompt
        gen = steps * batch * s.max_completion_length
        row.generated_tokens = int(gen)
        row.flops += 2 * shape.params * gen
    row.model_bytes = lora * 4 if lora and not s.merge else shape.params * wbytes
    master = 4 if s.bf16 and not lora else 0
    state = trainable * (12 + master)
    row.checkpoint_bytes = row.model_bytes + trainable * 8    # the model and AdamW's two moments
    micro = s.per_device_train_batch_size * (2 if work.job == "preference" else 1)   # chosen + rejected
    if work.job == "grpo":
        micro, longest = s.per_device_train_batch_size, min(s.max_length, data["longest_question"]
                                                            + s.max_completion_length)
    act_scale = wbytes / 2   # the constants below are for 16-bit activations
    act_per_layer = (2 if s.gradient_checkpointing else 34) * longest * micro * shape.hidden * act_scale
    activations = act_per_layer * shape.layers + (34 * longest * micro * shape.hidden * act_scale
                                                  if s.gradient_checkpointing else 0)
    weights = shape.params * (0.5 if s.load_in_4bit else wbytes)
    row.train_peak = int(weights / devices.weight_shards + state / devices.state_shards + activations
                         + micro * longest * shape.vocab * 4)


def plan_generation(row: StagePlan, work, shape: Shape, n: float, data: dict, cfg, devices: Devices) -> None:
    new = cfg.generation.max_new_tokens
    prompt = data["question_tokens"] + work.shots * data["tokens_per_record"]
    row.generated_tokens = int(n * work.per_question * new)
    row.flops = 2 * shape.params * (n * prompt + row.generated_tokens)   # prefill once per prompt (shared)
    row.model_bytes = int(n * work.per_question * (new * CHARS_PER_TOKEN + RECORD_OVERHEAD_BYTES))
    in_flight = min(MAX_SEQS_IN_FLIGHT, max(n * work.per_question, 1))
    kv_bytes = 2 * shape.layers * shape.kv_dim * 2 * in_flight * (prompt + new)   # 16-bit KV cache
    row.gen_peak = int((shape.params * 2 + kv_bytes) / devices.tensor_parallel)


def data_stats(cfg) -> dict:
    """Per split: its question count (after limits; None for a hub dataset not on disk), and the
    mean and longest question and record (question + solution) lengths in tokens, from the
    labeled set."""
    task = make_task(cfg.task)
    splits = {}
    lengths = {"question_tokens": 64, "tokens_per_record": 256, "longest_question": 128, "longest_record": 512}
    for split in ("gold", "unlabeled", "test", "dev"):
        path, limit = getattr(cfg.data, split), getattr(cfg.data, f"limit_{split}")
        if path is None:
            continue
        if path.startswith("hf:") or not Path(path).exists():
            splits[split] = limit
            continue
        rows = load_questions(task, path, limit, split)
        splits[split] = len(rows)
        if split == "gold" and rows:
            q = sum(len(r["question"]) for r in rows) / len(rows) / CHARS_PER_TOKEN
            sol = sum(len(r.get("solution") or "") for r in rows) / len(rows) / CHARS_PER_TOKEN
            lengths = {"question_tokens": int(q) + 8, "tokens_per_record": int(q + sol) + 16,
                       "longest_question": max(len(r["question"]) for r in rows) // CHARS_PER_TOKEN + 8,
                       "longest_record": max(len(r["question"]) + len(r.get("solution") or "") for r in rows)
                       // CHARS_PER_TOKEN + 16}
    return {"splits": splits, **lengths}


def devices_of(cfg, base_dir: Path) -> Devices:
    """Training processes and sharding from the launcher's accelerate config; generation's
    tensor / data parallelism from generation.options."""
    opts = cfg.generation.options
    devices = Devices(tensor_parallel=int(opts.get("tensor_parallel_size", 1)),
                      data_parallel=int(opts.get("data_parallel", 1)))
    acc = accelerate_config(cfg.launcher, base_dir) if cfg.launcher else None
    if acc:
        devices.train_processes = int(acc.get("num_processes", 1))
        kind = acc.get("distributed_type", "")
        stage = (acc.get("deepspeed_config") or {}).get("zero_stage")
        devices.sharding = {"FSDP": "fsdp", "MULTI_GPU": "ddp"}.get(kind) or (f"zero{stage}" if stage else "none")
    return devices


# ---- text ----------------------------------------------------------------------------------------
def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def plan_table(plan: Plan) -> list[str]:
    """One row per stage that writes or computes anything, then the totals."""
    head = ("stage", "kind", "writes", "train peak/dev", "gen peak/dev", "gen tokens", "train tokens", "time")
    rows = [head] + [(s.stage, s.kind, human_bytes(s.model_bytes) if s.model_bytes else "-",
                      human_bytes(s.train_peak) if s.train_peak else "-", human_bytes(s.gen_peak) if s.gen_peak else "-",
                      f"{s.generated_tokens / 1e6:.2f}M" if s.generated_tokens else "-",
                      f"{s.trained_tokens / 1e6:.2f}M" if s.trained_tokens else "-",
                      human_seconds(s.seconds) if s.seconds else "-")
                     for s in plan.stages if s.model_bytes or s.flops]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:] + [""] + plan_summary(plan)


def plan_summary(plan: Plan) -> list[str]:
    """The totals and what they assume, in a few lines (the first lines of `w2s run`)."""
    d, r = plan.devices, plan.rates
    lines = [f"plan: {human_bytes(plan.disk)} of disk in the run directory (largest checkpoint included), "
             f"~{human_seconds(plan.seconds)} of arithmetic at {_tflops(r['train'])} training "
             f"({d.train_processes} process{'es' * (d.train_processes > 1)}, {d.sharding}) and "
             f"{_tflops(r['generate'])} generating (tensor parallel {d.tensor_parallel}) "
             + ("(this machine's matrix-product rate, measured now" if plan.measured else "(stated rates, not measured")
             + "; `w2s plan` has the table)"]
    peak_train = max((s.train_peak for s in plan.stages), default=0)
    peak_gen = max((s.gen_peak for s in plan.stages), default=0)
    lines.append(f"plan: peak memory per device ~{human_bytes(peak_train)} training, ~{human_bytes(peak_gen)} "
                 "generating (estimates from the architecture, best read as lower bounds: measured training "
                 "peaks on CPU were 1.3-2.1x them, bench/plan_memory.py)")
    if plan.downloads:
        lines.append("plan: hub downloads into the HF cache (HF_HOME): " +
                     ", ".join(f"{m} ~{human_bytes(b)}" for m, b in plan.downloads.items()))
    if plan.unknown:
        lines.append(f"plan: not sized: {', '.join(plan.unknown)}")
    return lines


def _tflops(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:,.0f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:,.0f} GFLOP/s"


class NotEnoughDisk(RuntimeError):
    """The run directory's filesystem cannot hold what the plan says the run writes."""


def check_disk(plan: Plan, run_dir: Path) -> None:
    """Refuse a run whose plan does not fit the free space where its directory is (or will be)."""
    import shutil

    where = Path(run_dir).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if plan.disk > free:
        raise NotEnoughDisk(f"the plan needs {human_bytes(plan.disk)} in {run_dir} but {where} has "
                            f"{human_bytes(free)} free: free space, choose another --out, keep adapters "
                            "(merge: false) or pass --no-disk-check if the filesystem misreports its space")


# ---- the machine, measured -----------------------------------------------------------------------
def measure_flops(seconds: float = 1.0) -> dict:
    """The matrix-product rate this process reaches now ({"flops_per_s", "device", "dtype"}):
    fp32 2048x512 @ 512x2048 on CPU (the toy models' shapes run at the same rate), bf16 4096^3 on
    a GPU; repeated for about `seconds`. What the report's timing chart divides arithmetic by."""
    import time

    import torch

    cuda = torch.cuda.is_available()
    dtype, (m, k, n) = (torch.bfloat16, (4096, 4096, 4096)) if cuda else (torch.float32, (2048, 512, 2048))
    a = torch.randn(m, k, dtype=dtype, device="cuda" if cuda else "cpu")
    b = torch.randn(k, n, dtype=dtype, device=a.device)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        a @ b
        reps += 1
        if cuda:
            torch.cuda.synchronize()
    rate = 2 * m * k * n * reps / (time.perf_counter() - t0)
    return {"flops_per_s": rate, "device": "cuda" if cuda else f"cpu ({torch.get_num_threads()} threads)",
            "dtype": str(dtype).replace("torch.", "")}


def plan_record(plan: Plan, machine: dict) -> dict:
    """plan.json: each stage's planned work and the measured machine rate (the report's chart)."""
    return {"machine": machine,
            "stages": {s.stage: {"flops": s.flops, "generated_tokens": s.generated_tokens,
                                 "trained_tokens": s.trained_tokens, "model_bytes": s.model_bytes}
                       for s in plan.stages if s.flops or s.model_bytes}}
