"""`w2s train sft|dpo|orpo|grpo`, `w2s merge`, `w2s eval`: thin wrappers over w2s.training and
w2s.evaluation. The training commands' options are made from the settings types themselves
(w2s.training.settings: names, types, help, defaults; the names w2s used before stay as
aliases). The same commands run under `accelerate launch` (DDP / DeepSpeed / FSDP):

    accelerate launch --num_processes 2 -m w2s train sft --model M --data D.jsonl --out DIR
"""

from __future__ import annotations

import inspect
import json
import os
import typing
from pathlib import Path
from typing import Any, List, Literal, Optional

import typer
from typer.core import TyperCommand
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from w2s.cli.common import emit, user_errors
from w2s.io import check_output
from w2s.training import merge_adapter, read_lineage
from w2s.training.launch import JOB_KINDS
from w2s.training.settings import LoraSettings, Settings, describe_error, old_names

train_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Fine-tune models: SFT, DPO, ORPO, GRPO (TRL + PEFT; runs under accelerate launch).")

_MODEL = typer.Option(..., "--model", "-m", help="Starting model directory (or an adapter directory).")
_OUT = typer.Option(..., "--out", "-o", help="Output model directory (complete once DONE is written).")
_JSON = typer.Option(False, "--json", help="Print a JSON summary as the last line.")
_KW = inspect.Parameter.KEYWORD_ONLY

#: `w2s train COMMAND`: (job kind, settings the command fixes, what --data holds, help)
TRAIN_COMMANDS = {
    "sft": ("sft", {}, "SFT records (prompt, completion): JSONL/JSON/parquet/...",
            "Supervised fine-tuning, loss on the completion only."),
    "dpo": ("preference", {"method": "dpo"}, "Preference records (prompt, chosen, rejected).",
            "Direct preference optimisation from a Stage I model (reference = the starting model)."),
    "orpo": ("preference", {"method": "orpo"}, "Preference records (prompt, chosen, rejected).",
             "Odds-ratio preference optimisation (reference-free) from a Stage I model."),
    "grpo": ("grpo", {}, "GRPO records (prompt, pseudo_label).",
             "GRPO rewarded by offline pseudo-labels (Stage III), no gold anywhere."),
}
#: Flags spelled otherwise than --NAME/--no-NAME (the words users know).
_FLAG_DECLS = {"quiet": ("--quiet/--verbose", " /-v"), "lora": ("--lora/--full",)}
_LORA_PANEL, _SETTINGS_PANEL = "LoRA (with --lora)", "Training settings"


class PlainHelpCommand(TyperCommand):
    """Click's plain help: rich's option column cuts the settings' long TRL names."""

    def format_help(self, ctx, formatter) -> None:
        self.rich_markup_mode = None
        super().format_help(ctx, formatter)


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _lora_param(name: str) -> str:
    """LoRA settings on the command line: --lora-r, --lora-alpha, --lora-target-modules."""
    return name if name.startswith("lora_") else f"lora_{name}"


def _lora_old_names(name: str, info: FieldInfo) -> tuple[str, ...]:
    return tuple(o for o in map(_lora_param, old_names(info)) if o != _lora_param(name))


def _cli_type(info: FieldInfo) -> tuple[Any, Any]:
    """(annotation, default) of a setting on the command line."""
    annotation, default = info.annotation, info.default
    args = typing.get_args(annotation)
    if type(None) in args:                                          # Optional[X]
        annotation = next(a for a in args if a is not type(None))
    if annotation not in (int, float, str, bool) and typing.get_origin(annotation) is not Literal:
        annotation = str                                            # tuples, str | dict: text
        default = ",".join(default) if isinstance(default, tuple) else default
    return (Optional[annotation] if default is None else annotation), default


def _setting_param(param: str, info: FieldInfo, old: tuple[str, ...], panel: str) -> inspect.Parameter:
    """One command-line option made from a setting: its names, type, default and help."""
    annotation, default = _cli_type(info)
    if annotation is bool:
        flag = param.replace("_", "-")
        decls = _FLAG_DECLS.get(param, (f"--{flag}/--no-{flag}",)) + tuple(
            f"{_option_name(o)}/--no-{o.replace('_', '-')}" for o in old)
    else:
        decls = tuple(_option_name(n) for n in (param, *old))
    option = typer.Option(default, *decls, help=info.description, rich_help_panel=panel)
    return inspect.Parameter(param, _KW, default=option, annotation=annotation)


def settings_params(cls: type[Settings], fixed: dict) -> list[inspect.Parameter]:
    """Every setting of `cls` (not fixed by the command) as an option; LoRA's behind --lora."""
    params = []
    for name, info in cls.model_fields.items():
        if name in fixed:
            continue
        if name == "lora":
            params.append(inspect.Parameter("lora", _KW, annotation=bool, default=typer.Option(
                False, *_FLAG_DECLS["lora"], help=info.description, rich_help_panel=_LORA_PANEL)))
            params += [_setting_param(_lora_param(n), i, _lora_old_names(n, i), _LORA_PANEL)
                       for n, i in LoraSettings.model_fields.items()]
        elif name == "extra":
            params.append(inspect.Parameter("extra", _KW, annotation=Optional[List[str]], default=typer.Option(
                None, "--extra", rich_help_panel=_SETTINGS_PANEL,
                help=f"{info.description} KEY=VALUE, repeatable; VALUE is read as JSON when it parses.")))
        else:
            params.append(_setting_param(name, info, old_names(info), _SETTINGS_PANEL))
    return params


def settings_from_options(cls: type[Settings], options: dict, fixed: dict) -> Settings:
    """The settings the options give; an error names the option (`--learning-rate: ...`)."""
    values = {k: v for k, v in options.items() if k in cls.model_fields and k not in ("lora", "extra")}
    if options.get("lora"):
        values["lora"] = {n: options[_lora_param(n)] for n in LoraSettings.model_fields}
    values["extra"] = dict(_key_value(item) for item in options.get("extra") or ())
    try:
        return cls.model_validate({**values, **fixed})
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"]]
        name = _lora_param(loc[-1]) if loc[:1] == ["lora"] else (loc[0] if loc else "")
        raise ValueError((f"{_option_name(name)}: " if name else "") + describe_error(first, cls)) from None


def _key_value(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--extra: expected KEY=VALUE, got {item!r}")
    try:
        return key.strip(), json.loads(text)
    except ValueError:
        return key.strip(), text


def _train_command(command: str):
    """`w2s train COMMAND`: its options are the settings of its job kind."""
    kind_name, fixed, data_help, doc = TRAIN_COMMANDS[command]
    kind = JOB_KINDS.get(kind_name).obj

    def cmd(model: str, data: Path, out: Path, as_json: bool, **options):
        with user_errors():
            settings = settings_from_options(kind.settings, options, fixed)
            result = kind.train(model, data, out, settings)
        _summary(result, as_json)

    params = [inspect.Parameter("model", _KW, default=_MODEL, annotation=str),
              inspect.Parameter("data", _KW, annotation=Path,
                                default=typer.Option(..., "--data", "-d", help=data_help)),
              inspect.Parameter("out", _KW, default=_OUT, annotation=Path),
              *settings_params(kind.settings, fixed),
              inspect.Parameter("as_json", _KW, default=_JSON, annotation=bool)]
    cmd.__signature__ = inspect.Signature(params)
    cmd.__annotations__ = {p.name: p.annotation for p in params}
    cmd.__doc__ = doc
    return cmd


for _command in TRAIN_COMMANDS:
    train_app.command(_command, cls=PlainHelpCommand)(_train_command(_command))


def _summary(out: Path, as_json: bool) -> None:
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


def merge_cmd(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="LoRA adapter directory."),
    out: Path = _OUT,
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: from adapter_config.json)."),
    as_json: bool = _JSON,
):
    """Fold a LoRA adapter into its base model (a full model directory)."""
    with user_errors():
        result = merge_adapter(adapter, out, base=base)
    emit({"out": str(result), "complete": True}, as_json, f"merged {adapter} -> {result}")


def eval_cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task name (gsm8k, math, custom, toy)."),
    model: str = typer.Option(..., "--model", "-m", help="Model directory, hub name or LoRA adapter directory."),
    data: Path = typer.Option(..., "--data", "-d", help="Test questions file."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="PEFT/LoRA adapter on top of --model "
                                          "(openai backend: the served adapter name)."),
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
        from w2s.generation.sampling import check_sampling

        check_sampling(max_new_tokens=max_new_tokens, temperature=temperature, n=max(n, 1),
                       names={"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "n": "--n"})
        if n < 0:
            raise ValueError(f"--n: must be >= 0 (0 = greedy only), got {n}")
        check_output(out, [data, adapter], models=[model])
        metrics = evaluate(task_from_options(task, task_option), model, data, n=n, temperature=temperature,
                           max_new_tokens=max_new_tokens, limit=limit, backend=backend, out_path=out, seed=seed,
                           adapter=adapter)
    keys = ["accuracy"] + [k for k in metrics if k.startswith(("pass@", "maj@")) and k[-1].isdigit()]
    human = f"{metrics['n_questions']} questions: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in keys)
    emit(metrics, as_json, human + (f" -> {out}" if out else ""))


def register(app) -> None:
    app.add_typer(train_app, name="train")
    app.command("merge")(merge_cmd)
    app.command("eval")(eval_cmd)
