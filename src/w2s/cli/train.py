"""`w2s train sft|dpo|orpo`, `w2s merge`, `w2s eval`: thin wrappers over w2s.training and
w2s.evaluation. The same commands run under `accelerate launch` (DDP / DeepSpeed / FSDP):

    accelerate launch --num_processes 2 -m w2s train sft --model M --data D.jsonl --out DIR
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from w2s.cli.common import emit, user_errors
from w2s.io import check_output

train_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Fine-tune models: SFT, DPO, ORPO (TRL + PEFT; runs under accelerate launch).")


def _lora(lora: bool, r: int, alpha: int, dropout: float, targets: str):
    if not lora:
        return None
    from w2s.training import LoraSettings

    return LoraSettings(r=r, alpha=alpha, dropout=dropout, targets=targets)


def _common(lr, epochs, max_steps, batch_size, grad_accum, max_length, seed, bf16, report_to,
            lora, lora_r, lora_alpha, lora_dropout, lora_targets, merge, save_steps,
            gradient_checkpointing, keep_checkpoints, verbose) -> dict:
    kw = dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
              max_length=max_length, seed=seed, bf16=bf16, report_to=report_to,
              lora=_lora(lora, lora_r, lora_alpha, lora_dropout, lora_targets), merge=merge,
              save_steps=save_steps, gradient_checkpointing=gradient_checkpointing,
              keep_checkpoints=keep_checkpoints, quiet=not verbose)
    if lr is not None:
        kw["learning_rate"] = lr
    return kw


def _summary(out: Path, as_json: bool) -> None:
    import os

    from w2s.training import read_lineage

    if os.environ.get("RANK", "0") != "0":  # under a distributed launch, rank 0 reports
        return
    lin = read_lineage(out) or {}
    summary = {"out": str(out), "kind": lin.get("kind"), "global_step": lin.get("global_step"),
               "train_loss": lin.get("train_loss"), "complete": (out / "DONE").exists()}
    if lin.get("reference"):
        summary["reference"] = lin["reference"]
    human = (f"{summary['kind']}: {summary['global_step']} steps, train loss {summary['train_loss']:.4f} -> {out}"
             if summary["train_loss"] is not None else f"-> {out}")
    emit(summary, as_json, human)


# Options shared by every trainer (typer needs them spelled out per command).
_MODEL = typer.Option(..., "--model", "-m", help="Starting model directory (or an adapter directory).")
_OUT = typer.Option(..., "--out", "-o", help="Output model directory (complete once DONE is written).")
_EPOCHS = typer.Option(1.0, "--epochs", help="Epochs (ignored when --max-steps > 0).")
_MAX_STEPS = typer.Option(-1, "--max-steps", help="Budget in optimizer steps (overrides --epochs).")
_BS = typer.Option(4, "--batch-size", help="Per-device batch size.")
_GA = typer.Option(1, "--grad-accum", help="Gradient accumulation steps.")
_MAXLEN = typer.Option(1024, "--max-length", help="Max tokens per sequence (prompt + completion).")
_SEED = typer.Option(42, "--seed")
_BF16 = typer.Option(False, "--bf16/--no-bf16", help="bf16 mixed precision (and bf16 weights).")
_REPORT = typer.Option("none", "--report-to", help="none | tensorboard | wandb")
_LORA = typer.Option(False, "--lora/--full", help="LoRA (PEFT) instead of full fine-tuning.")
_LR_R = typer.Option(16, "--lora-r")
_LR_A = typer.Option(32, "--lora-alpha")
_LR_D = typer.Option(0.05, "--lora-dropout")
_LR_T = typer.Option("q,k,v,o,gate,up,down", "--lora-targets", help="Comma-separated module names.")
_MERGE = typer.Option(True, "--merge/--no-merge", help="LoRA: save merged weights (default) or the adapter.")
_SAVE = typer.Option(200, "--save-steps", help="Checkpoint every N steps into OUT/checkpoints (resume).")
_GC = typer.Option(False, "--gradient-checkpointing/--no-gradient-checkpointing")
_KEEP = typer.Option(False, "--keep-checkpoints", help="Keep OUT/checkpoints after success.")
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Progress bars and trainer logs.")
_JSON = typer.Option(False, "--json", help="Print a JSON summary as the last line.")


@train_app.command("sft")
def sft_cmd(
    model: str = _MODEL,
    data: Path = typer.Option(..., "--data", "-d", help="SFT records (prompt, completion): JSONL/JSON/parquet/..."),
    out: Path = _OUT,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-5)."),
    epochs: float = _EPOCHS, max_steps: int = _MAX_STEPS, batch_size: int = _BS, grad_accum: int = _GA,
    max_length: int = _MAXLEN, seed: int = _SEED, bf16: bool = _BF16, report_to: str = _REPORT,
    lora: bool = _LORA, lora_r: int = _LR_R, lora_alpha: int = _LR_A, lora_dropout: float = _LR_D,
    lora_targets: str = _LR_T, merge: bool = _MERGE, save_steps: int = _SAVE,
    gradient_checkpointing: bool = _GC, keep_checkpoints: bool = _KEEP,
    packing: bool = typer.Option(False, "--packing/--no-packing", help="Pack examples into max-length blocks."),
    padding_free: bool = typer.Option(False, "--padding-free/--no-padding-free", help="Padding-free batches."),
    verbose: bool = _VERBOSE, as_json: bool = _JSON,
):
    """Supervised fine-tuning, loss on the completion only."""
    with user_errors():
        from w2s.training import SFTSettings, train_sft

        settings = SFTSettings(packing=packing, padding_free=padding_free,
                               **_common(lr, epochs, max_steps, batch_size, grad_accum, max_length, seed, bf16,
                                         report_to, lora, lora_r, lora_alpha, lora_dropout, lora_targets, merge,
                                         save_steps, gradient_checkpointing, keep_checkpoints, verbose))
        result = train_sft(model, data, out, settings)
    _summary(result, as_json)


def _preference(method: str):
    def cmd(
        model: str = _MODEL,
        data: Path = typer.Option(..., "--data", "-d", help="Preference records (prompt, chosen, rejected)."),
        out: Path = _OUT,
        lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 5e-7)."),
        beta: float = typer.Option(0.1, "--beta", help="DPO: KL strength. ORPO: odds-ratio weight (lambda)."),
        sft_weight: float = typer.Option(0.0, "--sft-weight", help="DPO: weight of an SFT term on chosen."),
        reference: Optional[str] = typer.Option(None, "--reference", help="DPO: reference model (default: --model)."),
        epochs: float = _EPOCHS, max_steps: int = _MAX_STEPS, batch_size: int = _BS, grad_accum: int = _GA,
        max_length: int = _MAXLEN, seed: int = _SEED, bf16: bool = _BF16, report_to: str = _REPORT,
        lora: bool = _LORA, lora_r: int = _LR_R, lora_alpha: int = _LR_A, lora_dropout: float = _LR_D,
        lora_targets: str = _LR_T, merge: bool = _MERGE, save_steps: int = _SAVE,
        gradient_checkpointing: bool = _GC, keep_checkpoints: bool = _KEEP,
        verbose: bool = _VERBOSE, as_json: bool = _JSON,
    ):
        with user_errors():
            from w2s.training import PreferenceSettings, train_preference

            settings = PreferenceSettings(
                method=method, beta=beta, sft_weight=sft_weight, reference=reference,
                **_common(lr, epochs, max_steps, batch_size, grad_accum, max_length, seed, bf16, report_to,
                          lora, lora_r, lora_alpha, lora_dropout, lora_targets, merge, save_steps,
                          gradient_checkpointing, keep_checkpoints, verbose))
            result = train_preference(model, data, out, settings)
        _summary(result, as_json)

    cmd.__doc__ = {"dpo": "Direct preference optimisation from a Stage I model (reference = the starting model).",
                   "orpo": "Odds-ratio preference optimisation (reference-free) from a Stage I model."}[method]
    return cmd


train_app.command("dpo")(_preference("dpo"))
train_app.command("orpo")(_preference("orpo"))


def merge_cmd(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="LoRA adapter directory."),
    out: Path = _OUT,
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: from adapter_config.json)."),
    as_json: bool = _JSON,
):
    """Fold a LoRA adapter into its base model (a full model directory)."""
    with user_errors():
        from w2s.training import merge_adapter

        result = merge_adapter(adapter, out, base=base)
    emit({"out": str(result), "complete": True}, as_json, f"merged {adapter} -> {result}")


def eval_cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task name (gsm8k, math, custom, toy)."),
    model: str = typer.Option(..., "--model", "-m", help="Model directory."),
    data: Path = typer.Option(..., "--data", "-d", help="Test questions file."),
    n: int = typer.Option(10, "--n", help="Samples per question for pass@k / maj@k (0 = greedy only)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature for the n samples."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate the first N questions only."),
    backend: str = typer.Option("hf", "--backend", help="Generation backend (hf, vllm, ...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write metrics JSON here."),
    seed: int = typer.Option(0, "--seed"),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option",
                                                    help="Task option KEY=VALUE, repeatable (custom task fields)."),
    as_json: bool = _JSON,
):
    """Greedy accuracy, pass@k and maj@k of a model on a test set. Generations are kept beside
    --out and reused by a rerun with the same settings (regenerated when a setting changes)."""
    with user_errors():
        from w2s.cli.data import task_from_options
        from w2s.evaluation import evaluate

        check_output(out, [data], models=[model])
        metrics = evaluate(task_from_options(task, task_option), model, data, n=n, temperature=temperature,
                           max_new_tokens=max_new_tokens, limit=limit, backend=backend, out_path=out, seed=seed)
    keys = ["accuracy"] + [k for k in metrics if k.startswith(("pass@", "maj@")) and k[-1].isdigit()]
    human = f"{metrics['n_questions']} questions: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in keys)
    emit(metrics, as_json, human + (f" -> {out}" if out else ""))


def register(app) -> None:
    app.add_typer(train_app, name="train")
    app.command("merge")(merge_cmd)
    app.command("eval")(eval_cmd)
