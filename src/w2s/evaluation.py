"""Evaluate a model on a test set: greedy accuracy, and with n samples per question,
unbiased pass@n and maj@n. Generation is `w2s.generation.generate`, grading the task's,
scoring `w2s.method.metrics.score_generations`.

    from w2s.evaluation import evaluate
    m = evaluate("gsm8k", "runs/m_plus", "data/gsm8k/test.jsonl", n=10, out_path="m_plus.json")
    m["accuracy"], m["pass@k"], m["maj@k"]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from w2s.io import DataError, write_json


def _task(task):
    if isinstance(task, str):
        import w2s.tasks  # noqa: F401 - registers the built-in tasks
        from w2s.tasks.base import get_task

        return get_task(task)
    return task


def evaluate(task, model: str | os.PathLike, data, *, n: int = 10, temperature: float = 1.0,
             top_p: float = 1.0, max_new_tokens: int = 512, limit: int | None = None, backend: str = "hf",
             out_path: str | os.PathLike | None = None, gen_dir: str | os.PathLike | None = None,
             adapter: str | None = None, seed: int = 0, progress: bool = False,
             **backend_options) -> dict:
    """Score `model` on the questions of `data` (a file, or question records).

    Greedy decoding gives `accuracy`; with `n > 0`, `n` samples at `temperature` give
    `pass@k` and `maj@k` (k = n; also stored under `pass@{n}` / `maj@{n}`). Questions need a
    gold answer. Generations are kept (and resumed) in `gen_dir`, by default beside `out_path`
    (`<stem>.greedy.jsonl`, `<stem>.samples.jsonl`). The metrics dict is written to `out_path`
    as JSON when given, and returned.
    """
    from w2s.generation import SamplingConfig, generate
    from w2s.method.metrics import score_generations

    t = _task(task)
    if isinstance(data, (str, os.PathLike)):
        questions = t.load_questions(str(data))
        data_desc = str(Path(data).resolve())
    else:
        questions = [dict(q) for q in data]
        data_desc = None
    if limit is not None:
        questions = questions[:limit]
    questions = [q for q in questions if q.get("answer") not in (None, "")]
    if not questions:
        raise DataError(data_desc, "no questions with a gold answer to evaluate on", field="answer")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")

    prompts = [{"id": q["id"], "prompt": t.prompt(q["question"])} for q in questions]
    stop = tuple(t.stop)
    greedy_path = samples_path = None
    base = Path(gen_dir) if gen_dir else (Path(out_path).parent if out_path else None)
    if base is not None:
        stem = Path(out_path).stem if out_path else "eval"
        greedy_path, samples_path = base / f"{stem}.greedy.jsonl", base / f"{stem}.samples.jsonl"

    t0 = time.time()
    greedy = generate(str(model), prompts, SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                          stop=stop, seed=seed),
                      backend=backend, out_path=greedy_path, adapter=adapter, progress=progress, **backend_options)
    samples: list[dict] = []
    if n > 0:
        samples = generate(str(model), prompts,
                           SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                          n=n, stop=stop, seed=seed),
                           backend=backend, out_path=samples_path, adapter=adapter, progress=progress,
                           **backend_options)
    if backend == "hf":
        try:
            from w2s.generation import unload

            unload()  # free the cached model: the pipeline may train next
        except Exception:  # noqa: BLE001
            pass

    scores = score_generations(t, questions, greedy, samples)
    metrics: dict = {"task": getattr(t, "name", str(task)), "model": str(model), "adapter": adapter,
                     "data": data_desc, "n_questions": len(questions), **scores}
    if "k" in scores:
        metrics[f"pass@{scores['k']}"] = scores["pass@k"]
        metrics[f"maj@{scores['k']}"] = scores["maj@k"]
    metrics.update({"samples_per_question": n, "temperature": temperature, "top_p": top_p,
                    "max_new_tokens": max_new_tokens, "backend": backend, "seed": seed,
                    "truncated_greedy": sum(1 for g in greedy if g.get("finish_reason") == "length"),
                    "seconds": round(time.time() - t0, 3)})
    if greedy_path is not None:
        metrics["generations"] = {"greedy": str(greedy_path), "samples": str(samples_path) if n > 0 else None}
    if out_path is not None:
        write_json(out_path, metrics)
    return metrics
