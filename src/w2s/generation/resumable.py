"""The one `generate` entry point: resume from the output file, hand the missing samples to a
backend, stream finished records to disk, return everything in input order.

Backends only turn work items into raw results ({id, sample_index, response, finish_reason,
n_tokens}); everything about files, ordering, ids and progress lives here, once.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from w2s.generation.sampling import GenerationError, SamplingConfig, WorkItem, derive_seed, model_label
from w2s.io import DataError, JsonlAppender, read_jsonl, write_jsonl
from w2s.registry import Registry

#: generation backends by name; each entry imports its module on first use (vllm, ray and
#: torch are optional and slow to import). A config or --backend may also name a backend class
#: from outside w2s as "package.module:Class", called as Class(model, adapter=..., **options).
BACKEND_REGISTRY = Registry("generation backend", key="backend")


class _LazyBackend:
    def __init__(self, spec: str, doc: str):
        self.spec, self.__doc__ = spec, doc

    def __call__(self, model: str, adapter: str | None = None, **options):
        module, _, name = self.spec.partition(":")
        return getattr(importlib.import_module(module), name)(model, adapter=adapter, **options)


for _name, _spec, _doc in (
        ("hf", "w2s.generation.hf:HFBackend", "transformers on CPU or one GPU, length-bucketed batches"),
        ("vllm", "w2s.generation.vllm:VLLMBackend", "vLLM engines in child processes (GPU, or vLLM-CPU)"),
        ("openai", "w2s.generation.openai_backend:OpenAIBackend", "an OpenAI-compatible completions endpoint"),
        ("replay", "w2s.generation.replay:ReplayBackend", "recorded generation records instead of a model")):
    BACKEND_REGISTRY.register(_name, _LazyBackend(_spec, _doc))
BACKENDS = ("hf", "vllm", "openai", "replay")


def make_backend(backend: str, model: str, adapter: str | None = None, **options):
    """Instantiate a backend by name (an unknown one is a ValueError naming the choices); heavy
    imports happen only for the one selected."""
    return BACKEND_REGISTRY.get(backend)(model, adapter=adapter, **options)


def generate(model: str, prompts: Sequence[dict], sampling: SamplingConfig, backend: str = "hf",
             out_path: str | Path | None = None, adapter: str | None = None, *,
             progress: bool = True, label: str | None = None, **backend_options) -> list[dict]:
    """Generate `sampling.n` samples for every prompt; returns generation records in input order
    (prompt by prompt, sample_index 0..n-1).

    With `out_path`, records are appended as they finish and a rerun (after a crash or Ctrl-C)
    only generates the (id, sample_index) pairs that are not in the file yet; once complete,
    the file holds them in input order. The file must
    come from the same model and prompts; change the path when you change sampling settings.
    `label` is the records' `model` field (default: the model path, plus
    the adapter): the pipeline passes a path relative to the run directory, so a run's files do
    not depend on where the run directory is.
    """
    if not isinstance(sampling, SamplingConfig):
        raise TypeError("sampling must be a w2s.generation.SamplingConfig")
    prompts = _checked_prompts(prompts)
    prompts_by_id = {p["id"]: p["prompt"] for p in prompts}
    label = label or model_label(model, adapter)
    done = (_load_done(Path(out_path), prompts, sampling.n, label, check_model=backend != "replay")
            if out_path else {})
    in_order = list(done) == [(p["id"], i) for p in prompts for i in range(sampling.n)]  # a file that is whole
    pending = [WorkItem(p["id"], p["prompt"], i, derive_seed(sampling.seed, p["id"], i))
               for p in prompts for i in range(sampling.n) if (p["id"], i) not in done]
    if pending:
        runner = make_backend(backend, model, adapter=adapter, **backend_options)
        bar = _Progress(len(pending), enabled=progress, desc=f"generate[{backend}]")
        batches = ([_record(r, prompts_by_id, label) for r in raw] for raw in _run(runner, pending, sampling, done))
        _stream(batches, done, out_path, bar, total=len(prompts) * sampling.n)
    wanted = [(p["id"], i) for p in prompts for i in range(sampling.n)]
    ordered = [done[key] for key in wanted]
    if out_path and (pending or not in_order):
        try:
            _rewrite_in_input_order(Path(out_path), ordered)
        except OSError as e:  # the streamed file is whole and untouched (the rewrite is atomic)
            raise GenerationError(f"{out_path}: {e.strerror or e} while putting the finished file in input "
                                  f"order; all {len(ordered)} records are in it (not yet in input order): "
                                  "free space and rerun to reorder it (nothing is generated again)") from e
    return ordered


def _stream(batches: Iterator[list[dict]], done: dict, out_path, bar: "_Progress", total: int) -> None:
    """Add each batch of records to `done` and append it to `out_path`, opened with the first
    records (a backend that fails first leaves no file). A failed write (disk full) says how
    much of the work the file keeps, since a rerun resumes from it."""
    appender = None
    try:
        for records in batches:
            if out_path and records:
                try:
                    appender = appender or JsonlAppender(out_path)
                    appender.append(records)
                except OSError as e:
                    raise GenerationError(f"{out_path}: {e.strerror or e}; {_kept(out_path, len(done))} of the "
                                          f"{total} records are in it and are kept: free space and rerun to "
                                          "generate only the missing ones") from e
            for r in records:
                done[(r["id"], r["sample_index"])] = r
            bar.update(len(records), sum(r["n_tokens"] for r in records))
    finally:
        bar.close()
        if appender:
            with contextlib.suppress(OSError):  # after a failed write, that error is the one to report
                appender.close()


def _kept(path, at_least: int) -> int:
    """Whole records in a file whose last write failed (a torn last line is not one)."""
    try:
        return max(at_least, len(read_jsonl(path, tolerate_partial_tail=True)))
    except (OSError, DataError):
        return at_least


def _rewrite_in_input_order(path: Path, ordered: list[dict]) -> None:
    """Once complete, rewrite the streamed file (completion order) in input order, atomically;
    rows for other ids that were already in the file are kept after them."""
    wanted = {(r["id"], r["sample_index"]) for r in ordered}
    others = [r for r in read_jsonl(path, tolerate_partial_tail=True)
              if (str(r.get("id")), r.get("sample_index", 0)) not in wanted]
    write_jsonl(path, ordered + others)


def _run(runner, pending: list[WorkItem], sampling: SamplingConfig, done: dict) -> Iterator[list[dict]]:
    """Run the backend; with greedy decoding, every sample of a prompt is the same, so generate
    (or reuse) one per id and copy it to the other sample indices."""
    if not (sampling.greedy and getattr(runner, "deduplicate_greedy", True)):
        yield from runner.run(pending, sampling)
        return
    wanted: dict[str, list[int]] = {}
    for it in pending:
        wanted.setdefault(it.id, []).append(it.sample_index)
    reusable = {key[0]: rec for key, rec in done.items()}
    copies, todo = [], []
    for it in pending:
        if it.sample_index != wanted[it.id][0]:
            continue
        if it.id in reusable:
            copies.extend(_copy_to(reusable[it.id], wanted[it.id]))
        else:
            todo.append(it)
    if copies:
        yield copies
    if todo:
        for raw in runner.run(todo, sampling):
            yield [c for r in raw for c in _copy_to(r, wanted[r["id"]])]


def _copy_to(result: dict, sample_indices: list[int]) -> list[dict]:
    return [{**result, "sample_index": i} for i in sample_indices]


def _record(raw: dict, prompts_by_id: dict, label: str) -> dict:
    return {"id": raw["id"], "prompt": prompts_by_id[raw["id"]], "response": raw["response"],
            "sample_index": int(raw["sample_index"]), "finish_reason": raw["finish_reason"],
            "n_tokens": int(raw["n_tokens"]), "model": raw.get("model", label)}


def _checked_prompts(prompts: Iterable[dict]) -> list[dict]:
    out, seen = [], set()
    for i, p in enumerate(prompts, 1):
        if "id" not in p or "prompt" not in p:
            raise DataError(None, "each prompt needs 'id' and 'prompt'", row=i)
        pid = str(p["id"])
        if not isinstance(p["prompt"], str):
            raise DataError(None, "prompt must be a string", row=i, field="prompt")
        if pid in seen:
            raise DataError(None, f"duplicate prompt id {pid!r}", row=i, field="id")
        seen.add(pid)
        out.append({"id": pid, "prompt": p["prompt"]})
    return out


def _load_done(path: Path, prompts: list[dict], n: int, label: str, check_model: bool = True) -> dict:
    """Records already in the output file for the requested (id, sample_index) pairs.

    A record for a requested id with another prompt or model means the file belongs to a
    different run: resuming would silently mix the two, so refuse."""
    if not path.exists():
        return {}
    prompt_of = {p["id"]: p["prompt"] for p in prompts}
    done, rows = {}, {}
    for row, r in enumerate(read_jsonl(path, tolerate_partial_tail=True), 1):
        rid, si = str(r.get("id")), r.get("sample_index", 0)
        if rid not in prompt_of or not isinstance(si, int) or si >= n:
            continue
        if r.get("prompt") != prompt_of[rid]:
            raise DataError(path, f"holds a different prompt for id {rid!r}; this file belongs to "
                                  f"other work (move it away to regenerate it, or write elsewhere)",
                            row=row, field="prompt")
        if check_model and not _same_model(r.get("model"), label):
            raise DataError(path, f"was generated by {r.get('model')!r}, not {label!r} "
                                  f"(move it away to regenerate it, or write elsewhere)", row=row, field="model")
        r["id"] = rid
        if (rid, si) in done and done[(rid, si)] != r:  # a repeat is harmless; two answers are not
            raise DataError(path, f"rows {rows[(rid, si)]} and {row} are different records for id {rid!r}, "
                                  f"sample {si} (move the file away to regenerate it)", row=row, field="id")
        done[(rid, si)], rows[(rid, si)] = r, row
    return done


def _same_model(recorded, label: str) -> bool:
    """The same label, or two spellings of one local model path (relative or absolute, a
    trailing slash, a symlink): resuming must not depend on how the path was typed."""
    if recorded == label:
        return True
    try:
        return isinstance(recorded, str) and os.path.samefile(recorded, label)
    except OSError:  # not local paths (hub names, model+adapter labels) or gone
        return False


class _Progress:
    """tqdm bar with items/s (tqdm's rate) and tokens/s (postfix); a no-op when disabled."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.tokens, self.start = 0, time.perf_counter()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="gen", dynamic_ncols=True)

    def update(self, items: int, tokens: int) -> None:
        self.tokens += tokens
        if self.bar is not None:
            rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{rate:.0f} tok/s", refresh=False)
            self.bar.update(items)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
