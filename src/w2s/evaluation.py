"""Evaluate a model on a test set: greedy accuracy, and with n samples per question,
unbiased pass@n and maj@n. The ONE evaluator: `w2s eval` and the pipeline's eval stages both
call `evaluate`. Generation is `w2s.generation.generate`, grading the task's, scoring
`w2s.method.metrics.score_generations`.

    from w2s.evaluation import evaluate
    m = evaluate("gsm8k", "runs/m_plus", "data/gsm8k/test.jsonl", n=10, out_path="m_plus.json")
    m["accuracy"], m["pass@k"], m["maj@k"]

Generations are a cache beside the metrics (`<stem>.greedy.jsonl`, `<stem>.samples.jsonl`),
keyed by everything that shapes them (`<stem>.generations.json`: model, adapter, backend,
prompts, sampling, backend options): a rerun with the same settings resumes or reuses them,
a rerun with other settings regenerates, so a metrics file never describes generations made
with other settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

from w2s import generation
from w2s.generation import SPEED_ONLY_OPTIONS, SamplingConfig, generate, keep_engines
from w2s.io import DataError, check_output, read_json, write_json, write_text
from w2s.method.fewshot import zero_shot_prompts
from w2s.method.metrics import score_generations
from w2s.tasks import make_task

log = logging.getLogger("w2s.evaluation")

def evaluate(task, model: str | os.PathLike, data, *, n: int = 10, temperature: float = 1.0,
             top_p: float = 1.0, max_new_tokens: int = 512, limit: int | None = None, backend: str = "hf",
             out_path: str | os.PathLike | None = None, gen_dir: str | os.PathLike | None = None,
             adapter: str | None = None, seed: int = 0, prompts: list[dict] | None = None,
             progress: bool = False, model_label: str | None = None, greedy_from: str | os.PathLike | None = None,
             **backend_options) -> dict:
    """Score `model` on the questions of `data` (a file, or question records).

    Greedy decoding gives `accuracy`; with `n > 0`, `n` samples at `temperature` give
    `pass@k` and `maj@k` (k = n; also stored under `pass@{n}` / `maj@{n}`). Questions need a
    gold answer. `prompts` ({"id", "prompt"} per question) replace the task's zero-shot prompts
    (e.g. few-shot evaluation). Generations are cached in `gen_dir`, by default beside
    `out_path`. `model_label` names the model in records and metrics (default: its path; the
    pipeline passes one relative to the run directory). The metrics dict is written to
    `out_path` as JSON when given, and returned. `greedy_from` names another scored file whose
    greedy generations are reused when they were made with the same settings (the temperature
    sweep's evals: greedy decoding does not depend on the sampling temperature).
    """

    t = make_task(task)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    questions, data_desc = _scored_questions(t, data, limit)
    prompts = zero_shot_prompts(t, questions) if prompts is None else prompts
    stop = tuple(t.stop)
    greedy_cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=stop, seed=seed)
    sample_cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                n=max(n, 1), stop=stop, seed=seed)
    paths = _cache_paths(gen_dir, out_path, data if data_desc else None)
    if paths:
        greedy_key = _cache_key(model, adapter, backend, prompts, greedy_cfg, backend_options)
        _key_generation_cache(paths["key"], {
            "greedy": (paths["greedy"], greedy_key),
            "samples": (paths["samples"], _cache_key(model, adapter, backend, prompts, sample_cfg, backend_options))})
        _reuse_greedy(greedy_from, paths["greedy"], greedy_key)

    t0 = time.time()
    run = dict(backend=backend, adapter=adapter, progress=progress, label=model_label, **backend_options)
    with keep_engines():  # vllm: the greedy pass and the n samples on one engine start
        greedy = generate(str(model), prompts, greedy_cfg, out_path=paths.get("greedy"), **run)
        samples = generate(str(model), prompts, sample_cfg, out_path=paths.get("samples"), **run) if n > 0 else []
    if backend == "hf":
        generation.unload()  # free the cached model: the pipeline may train next

    metrics = {"task": t.name, "model": model_label or str(model), "adapter": adapter, "data": data_desc,
               "n_questions": len(questions), **_scores(t, questions, greedy, samples),
               "samples_per_question": n, "temperature": temperature, "top_p": top_p,
               "max_new_tokens": max_new_tokens, "backend": backend, "seed": seed,
               "truncated_greedy": sum(1 for g in greedy if g.get("finish_reason") == "length"),
               "seconds": round(time.time() - t0, 3)}
    if paths:
        metrics["generations"] = {"greedy": paths["greedy"].name, "samples": paths["samples"].name if n > 0 else None}
    if out_path is not None:
        write_json(out_path, metrics)
    return metrics


def _scored_questions(task, data, limit: int | None) -> tuple[list[dict], str | None]:
    """The questions of `data` (a file, or question records) that have a gold answer."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or absent), got {limit}")
    if isinstance(data, (str, os.PathLike)):
        questions, data_desc = task.load_questions(str(data)), str(data)
    else:
        questions, data_desc = [dict(q) for q in data], None
    questions = [q for q in questions[:limit] if q.get("answer") not in (None, "")]
    if not questions:
        raise DataError(data_desc, "no questions with a gold answer to evaluate on", field="answer")
    return questions, data_desc


def _cache_paths(gen_dir, out_path, data_file) -> dict[str, Path]:
    """Where the generations are cached ({} = not cached): `gen_dir`, else beside `out_path`."""
    base = Path(gen_dir) if gen_dir else (Path(out_path).parent if out_path else None)
    if base is None:
        return {}
    paths = _cache_files(base, _scored_stem(out_path) if out_path else "eval")
    for cache in paths.values():
        check_output(cache, [data_file] if data_file else [])  # the cache never replaces the test file
    return paths


def _scored_stem(out_path: str | os.PathLike) -> str:
    """The scored file's name without `.json` only: `m_t0.5` and `m_t0.7` keep caches of their own."""
    name = Path(out_path).name
    return name[:-len(".json")] if name.endswith(".json") else name


def _cache_files(base: Path, stem: str) -> dict[str, Path]:
    """The generation cache of the scored file `base/stem.json`: its greedy and sampled generations and their key."""
    return {"greedy": base / f"{stem}.greedy.jsonl", "samples": base / f"{stem}.samples.jsonl",
            "key": base / f"{stem}.generations.json"}


def _scores(task, questions, greedy, samples) -> dict:
    scores = score_generations(task, questions, greedy, samples)
    if "k" in scores:
        scores[f"pass@{scores['k']}"] = scores["pass@k"]
        scores[f"maj@{scores['k']}"] = scores["maj@k"]
    return scores


def _cache_key(model, adapter, backend: str, prompts: list[dict], sampling, options: dict) -> str:
    """Everything that shapes a generation file, hashed. The sample count is left out: samples
    are seeded per (seed, id, index), so the first k of n are the same records as a run of k."""
    shaping = {k: v for k, v in options.items() if k not in SPEED_ONLY_OPTIONS}
    blob = json.dumps({"model": str(model), "model_files": _files_stamp(model), "adapter": adapter,
                       "adapter_files": _files_stamp(adapter), "backend": backend, "options": shaping,
                       "prompts": [[p["id"], p["prompt"]] for p in prompts],
                       "sampling": {k: v for k, v in dataclasses.asdict(sampling).items() if k != "n"}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _files_stamp(path) -> list | None:
    """(name, size, mtime) of a local model's files: a model retrained at the same path is
    another model. None for a hub name or served model."""
    if path is None or not Path(path).exists():
        return None
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and "checkpoints" not in f.parts)
    return [[str(f.relative_to(p)) if f != p else f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _reuse_greedy(source: str | os.PathLike | None, greedy: Path, key: str) -> None:
    """Start `greedy`'s cache from the greedy generations behind the scored file `source` when
    they were made with the same settings (`key`); generate() then resumes from them."""
    if source is None or greedy.exists():
        return
    src = _cache_files(Path(source).parent, _scored_stem(source))
    if src["greedy"].exists() and src["key"].exists() and read_json(src["key"]).get("greedy") == key:
        write_text(greedy, src["greedy"].read_text())


def _key_generation_cache(key_file: Path, files: dict[str, tuple[Path, str]]) -> None:
    """Drop cached generation files that were made with other settings (or whose settings are
    unknown), then record the current keys. The files are this evaluator's own cache."""
    old = read_json(key_file) if key_file.exists() else {}
    for name, (path, key) in files.items():
        if path.exists() and old.get(name) != key:
            log.warning("%s was generated with other settings (or unknown ones); regenerating it", path)
            path.unlink()
    write_json(key_file, {name: key for name, (_, key) in files.items()})
