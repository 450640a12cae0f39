"""Shared machinery of the trainers: validating data, loading models, output directories,
resume, finalisation (merge, lineage, DONE) and cleanup. Knows nothing of TRL (see trl_compat)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from w2s import models
from w2s.io import DataError, check_output, read_records, write_json
from w2s.models import adapter_base, free_memory
from w2s.training import lineage as lin
from w2s.training import outdir as od
from w2s.training import trl_compat

log = logging.getLogger("w2s.training")

CHECKPOINTS = od.CHECKPOINTS
RUN_FILE = "w2s_run.json"
_ADAPTER_TMP = od.ADAPTER_TMP


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_training_records(data, fields: Sequence[str]) -> list[dict]:
    """Read and validate records BEFORE any model is loaded: every row must have every field as
    a string. Errors name the file, the row (1-based) and the field."""
    if isinstance(data, (str, os.PathLike)):
        src = str(data)
        records = read_records(src, required=fields)
    else:
        src = None
        records = list(data)
        for i, r in enumerate(records, 1):
            if not isinstance(r, dict):
                raise DataError(src, f"expected a record (dict), got {type(r).__name__}", row=i)
            for f in fields:
                if f not in r or r[f] is None:
                    raise DataError(src, "missing required field", row=i, field=f)
    for i, r in enumerate(records, 1):
        for f in fields:
            if not isinstance(r[f], str):
                raise DataError(src, f"expected a string, got {type(r[f]).__name__}", row=i, field=f)
    if not records:
        raise DataError(src, "no training records")
    return records


def bound_lengths(records: list[dict], fields: Sequence[str], tokenizer, max_length: int) -> list[dict]:
    """Cut over-long fields BEFORE the trainer tokenises them: one 50 MB record would otherwise be
    tokenised whole (gigabytes) only to be truncated to max_length tokens. The bound, twice
    max_length x the longest vocabulary entry in characters, still leaves every cut field
    longer than max_length tokens, so the trainers (which keep the start) see the same tokens."""
    longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
    bound = 2 * max_length * max(longest, 1)
    out, cut = [], 0
    for r in records:
        if any(len(r[f]) > bound for f in fields):
            r = {**r, **{f: r[f][:bound] for f in fields}}
            cut += 1
        out.append(r)
    if cut:
        log.warning("%d of %d records have a field longer than %d characters; cut to that length "
                    "(max_length is %d tokens)", cut, len(records), bound, max_length)
    return out


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_logs(quiet: bool):
    """Silence transformers/datasets progress bars and info logs for the duration; restore after."""
    if not quiet:
        yield
        return
    import datasets
    import transformers

    tv = transformers.logging.get_verbosity()
    dv = datasets.logging.get_verbosity()
    dpb = datasets.utils.logging.is_progress_bar_enabled() if hasattr(datasets.utils.logging, "is_progress_bar_enabled") else None
    old_env = os.environ.get("TRL_EXPERIMENTAL_SILENCE")
    tpb = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if tpb:
            transformers.utils.logging.enable_progress_bar()
        transformers.logging.set_verbosity(tv)
        datasets.logging.set_verbosity(dv)
        if dpb:
            datasets.enable_progress_bars()
        if old_env is None:
            os.environ.pop("TRL_EXPERIMENTAL_SILENCE", None)


def dist_state():
    from accelerate import PartialState

    return PartialState(cpu=not trl_compat.has_accelerator())


def torch_dtype(settings):
    import torch

    if settings.dtype == "auto":
        return torch.bfloat16 if settings.bf16 else torch.float32
    return getattr(torch, settings.dtype)


def load_tokenizer(path: str | os.PathLike):
    """The model's tokenizer, padding with EOS when it has no pad token (the trainers need one)."""
    tok = models.load_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | os.PathLike, settings=None, dtype=None):
    """A model to train (or the DPO reference), in the settings' dtype and attention."""
    dtype = dtype if dtype is not None else (torch_dtype(settings) if settings is not None else None)
    quantized = four_bit(dtype) if getattr(settings, "load_in_4bit", False) else None
    return models.load_causal_lm(path, dtype=dtype, attn_implementation=getattr(settings, "attn_implementation", None),
                                 quantization_config=quantized)


def four_bit(compute_dtype):
    """QLoRA's base: NF4 weights with double quantization (Dettmers et al., 2023), computing in
    the training dtype. bitsandbytes is imported only here, and needs CUDA."""
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError("load_in_4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes (CUDA GPUs)")
    if not torch.cuda.is_available():
        raise RuntimeError("load_in_4bit (QLoRA) needs a CUDA GPU (bitsandbytes 4-bit); on CPU, train LoRA "
                           "on the full-precision base (load_in_4bit: false)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16)


def load_for_training(model: str, settings):
    """The model object to train and the LoRA config for the trainer (None: nothing to add).

    With LoRA, a starting model that is itself an adapter directory (M_plus of a run that keeps
    adapters) is CONTINUED: its adapter loads trainable onto its base, so the result is again one
    adapter over that base (what vLLM serves as a LoRA request), and a trainer that needs a
    reference (DPO; GRPO with beta > 0) copies that adapter as its frozen "ref" (TRL): the
    reference is the starting model, never the bare base."""
    if settings.lora is not None and models.is_adapter_dir(model):
        from peft import PeftModel

        base = load_model(adapter_base(model), settings)
        return PeftModel.from_pretrained(base, model, is_trainable=True), None
    return load_model(model, settings), (trl_compat.lora_config(settings.lora) if settings.lora is not None else None)


def trained_base(model: str, settings) -> str:
    """The base an output adapter sits on: the starting model, or the starting adapter's base."""
    return adapter_base(model) if settings.lora is not None and models.is_adapter_dir(model) else model


def model_identity(model: str) -> str:
    """Cheap identity of a model dir's CONTENT (so retraining the starting model invalidates
    caches downstream): weight file names, sizes and mtimes, plus its DONE stamp."""
    p = Path(model)
    if not p.is_dir():
        return model
    parts = []
    for f in sorted(p.iterdir()):
        if f.suffix in (".safetensors", ".json") or f.name == lin.DONE:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def fingerprint(kind: str, model: str, data_fp: dict, settings) -> str:
    cfg = settings.to_dict()
    for k in ("quiet", "report_to", "logging_dir", "logging_steps", "keep_checkpoints"):
        cfg.pop(k, None)
    blob = json.dumps({"kind": kind, "model": str(model), "model_id": model_identity(str(model)),
                       "data": data_fp.get("sha256"), "config": cfg},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_stage(out: Path, stage: Path, fp: str) -> str | None:
    """Make the staging directory of this run ready; return the checkpoint to resume from, if any.

    Runs on the main process only. OUT itself is not touched until the new model is complete
    (see outdir). Staging directories of other configurations or data are discarded."""
    od.check_replaceable(out)  # refuse now, not after hours of training
    od.remove_stale_stages(out, keep=stage)
    stage.mkdir(parents=True, exist_ok=True)
    for entry in stage.iterdir():  # partial outputs of an interrupted attempt
        if entry.name in (CHECKPOINTS, "logs"):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    ckpt = stage / CHECKPOINTS
    ckpt.mkdir(exist_ok=True)
    write_json(ckpt / RUN_FILE, {"fingerprint": fp, "out": str(out),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return trl_compat.last_checkpoint(str(ckpt), drop_partial=True)


def cached(out: Path, fp: str) -> bool:
    if not lin.is_complete(out):
        return False
    old = lin.read_lineage(out) or {}
    return old.get("fingerprint") == fp


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def run_training(*, kind: str, model: str, data, out_dir, settings, fields: Sequence[str],
                 build_trainer: Callable, extra_lineage: Callable[[Any], dict] | None = None,
                 callbacks=()) -> Path:
    """The shape shared by SFT, DPO, ORPO and GRPO:
    validate data -> (cached?) -> prepare a staging dir beside OUT -> load model -> train (resume)
    -> save model (merge LoRA) -> lineage -> DONE -> swap into OUT -> cleanup.

    OUT keeps its previous model until the new one is complete (see outdir); an output that is,
    contains or lies inside an input is refused before anything is written.

    `build_trainer(model_obj, tokenizer, records, ckpt_dir, peft_config, callbacks)` returns a
    transformers Trainer."""
    out = Path(out_dir)
    model = str(model)
    records = load_training_records(data, fields)            # fails before the model loads
    if settings.load_in_4bit:
        four_bit(None)                                       # so does QLoRA without bitsandbytes / CUDA
    check_output(out, [data if isinstance(data, (str, os.PathLike)) else None,
                       getattr(settings, "reference", None)], is_dir=True, models=[model])
    data_fp = lin.data_fingerprint(data, records)
    fp = fingerprint(kind, model, data_fp, settings)
    state = dist_state()
    if _finished_before(out, fp, state):
        return out
    stage = od.staging_dir(out, fp)
    resume = _resume_point(out, stage, fp, state)
    with quiet_logs(settings.quiet), trl_compat.log_dir(settings.logging_dir or str(stage / "logs")):
        main, facts = _train(model, records, fields, settings, stage, resume, build_trainer, callbacks,
                             extra_lineage)
        if main:
            _save_output(stage, model, settings)
            lineage = {"kind": kind, "base_model": lin.describe_model(model),
                       "adapter": settings.lora is not None and not settings.merge,
                       "merged": settings.lora is not None and settings.merge,
                       "adapter_base": (lin.describe_model(trained_base(model, settings))
                                        if settings.lora is not None and not settings.merge else None),
                       "lora": settings.to_dict()["lora"], "data": data_fp, "config": settings.to_dict(),
                       "fingerprint": fp, "global_step": facts.pop("global_step"),
                       "resumed_from": os.path.basename(resume) if resume else None,
                       "train_loss": facts.pop("train_loss"), "train_seconds": facts.pop("train_seconds"),
                       "world_size": state.num_processes, "versions": trl_compat.versions(),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **facts}
            lin.write_lineage(stage, lineage)
            if not settings.keep_checkpoints:
                shutil.rmtree(stage / CHECKPOINTS, ignore_errors=True)
            lin.mark_done(stage)                                 # the new model is complete
            od.publish(stage, out)                               # LAST: swap it in
        state.wait_for_everyone()
    free_memory()
    return out


def _finished_before(out: Path, fp: str, state) -> bool:
    """OUT is already complete for these inputs, or their model was trained and staged but not
    yet swapped in (then it is swapped in now)."""
    if state.is_main_process:
        od.recover(out)
    state.wait_for_everyone()
    if cached(out, fp):
        log.info("%s is complete with the same model, data and config; not retraining", out)
        return True
    stage = od.staging_dir(out, fp)
    staged = lin.is_complete(stage)  # trained, then interrupted before the swap
    state.wait_for_everyone()        # every rank has looked before the main process changes anything
    if staged:
        if state.is_main_process:
            od.publish(stage, out)
        state.wait_for_everyone()
    return staged


def _resume_point(out: Path, stage: Path, fp: str, state) -> str | None:
    """The staging directory made ready (main process); the checkpoint every rank resumes from."""
    resume = None
    if state.is_main_process:
        resume = prepare_stage(out, stage, fp)
    state.wait_for_everyone()
    if not state.is_main_process:
        resume = trl_compat.last_checkpoint(str(stage / CHECKPOINTS))
    return resume


def _train(model: str, records: list[dict], fields: Sequence[str], settings, stage: Path, resume: str | None,
           build_trainer: Callable, callbacks, extra_lineage: Callable[[Any], dict] | None) -> tuple[bool, dict]:
    """Train into `stage` (the weights, or the adapter in stage/.adapter); (is this the main
    process, {global_step, train_loss, train_seconds, **extra_lineage})."""
    from transformers import set_seed

    set_seed(settings.seed)
    tokenizer = load_tokenizer(model)
    records = bound_lengths(records, fields, tokenizer, settings.max_length)
    model_obj, peft_config = load_for_training(model, settings)
    trainer = build_trainer(model_obj, tokenizer, records, str(stage / CHECKPOINTS), peft_config, list(callbacks))
    if settings.quiet:
        trl_compat.silence(trainer)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    facts = {"train_seconds": round(time.time() - t0, 3), "global_step": int(trainer.state.global_step),
             "train_loss": float(getattr(result, "training_loss", float("nan"))),
             **(extra_lineage(trainer) if extra_lineage else {})}
    trainer.save_model(str(stage / _ADAPTER_TMP) if settings.lora is not None else str(stage))
    trl_compat.wait_for_everyone(trainer)
    main = trl_compat.is_main_process(trainer)
    del trainer, model_obj
    free_memory()
    return main, facts


def _save_output(stage: Path, model: str, settings) -> None:
    """LoRA: merge the adapter into the weights, or keep it pointing at its base; no pickles."""
    if settings.lora is not None:
        tmp, base = stage / _ADAPTER_TMP, trained_base(model, settings)
        for extra in tmp.iterdir():  # the trainer's frozen reference copy ("ref/") is not the model
            if extra.is_dir() and (extra / "adapter_config.json").is_file():
                shutil.rmtree(extra)
        if settings.merge:
            merge_into(tmp, stage, base=base, dtype=torch_dtype(settings))
            shutil.rmtree(tmp)
        else:
            for entry in tmp.iterdir():
                shutil.move(str(entry), str(stage / entry.name))
            tmp.rmdir()
            _point_adapter_at_base(stage, base)
    _drop_training_args(stage)


def _drop_training_args(out: Path) -> None:
    p = out / "training_args.bin"  # pickled, version-specific: lineage.json records the config
    if p.exists():
        p.unlink()


def _point_adapter_at_base(out: Path, base: str) -> None:
    p = out / "adapter_config.json"
    if p.exists():
        cfg = json.loads(p.read_text())
        bp = Path(base)
        cfg["base_model_name_or_path"] = str(bp.resolve()) if bp.exists() else base
        write_json(p, cfg)


def merge_into(adapter_dir: Path, out: Path, base: str | None = None, dtype=None) -> None:
    """Load base + adapter, fold the adapter into the weights, save model + tokenizer to `out`."""
    merged = models.load_causal_lm(base or adapter_base(adapter_dir), dtype=dtype, adapter=adapter_dir)
    merged.save_pretrained(str(out), safe_serialization=True)
    load_tokenizer(adapter_dir).save_pretrained(str(out))
    del merged
    free_memory()
