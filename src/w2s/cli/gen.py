"""`w2s generate` (zero-/few-shot generation through a task, any backend) and `w2s serve`
(an OpenAI-compatible server over the hf backend)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from w2s.cli.common import emit, nonempty, user_errors


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def generate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model dir or hub name (hf/vllm), served model "
                              "name (openai), or a recorded generations file (replay)."),
    input: Path = typer.Option(..., "--input", "-i", help="Questions file (jsonl/json/parquet/csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output generations JSONL (appended; resumable)."),
    task: str = typer.Option("gsm8k", "--task", "-t", help="Task that formats prompts and stop strings."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf | vllm | openai | replay"),
    shots: int = typer.Option(0, "--shots", help="Few-shot demonstrations per prompt (needs --demos)."),
    demos: Optional[Path] = typer.Option(None, "--demos", help="Weak outputs to draw demonstrations from."),
    n: int = typer.Option(1, "--n", help="Samples per question."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k", help="0 = no top-k."),
    seed: int = typer.Option(0, "--seed", help="Sampling and demonstration seed."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    stop: List[str] = typer.Option([], "--stop", help="Extra stop string (repeatable); the task's are always used."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="PEFT/LoRA adapter on top of --model."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="hf: most rows per batch (default: any)."),
    max_batch_tokens: Optional[int] = typer.Option(None, "--max-batch-tokens", help="hf: batch budget of rows x "
                                                   "(prompt + new tokens) (default: from the KV cache size)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16"),
    device: str = typer.Option("auto", "--device", help="hf: auto | cpu | cuda | cuda:N"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: endpoint (or OPENAI_BASE_URL)."),
    concurrency: int = typer.Option(8, "--concurrency", help="openai: requests in flight."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs per model."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N questions."),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option", help="Task option KEY=VALUE (repeatable)."),
    data_parallel: int = typer.Option(1, "--data-parallel", help="vllm: engine replicas on Ray (local Ray "
                                      "cluster unless RAY_ADDRESS is set)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
):
    """Generate answers for every question of INPUT with MODEL; resumable (rerun to finish)."""
    from w2s.cli.data import task_from_options
    from w2s.generation import GenerationError, SamplingConfig, generate
    from w2s.generation.sampling import check_sampling
    from w2s.io import check_output

    with user_errors():
        check_sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, n=n,
                       names={"max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
                              "top_p": "--top-p", "top_k": "--top-k", "n": "--n"})
        check_output(out, [input, demos, adapter], models=[model])
        the_task = task_from_options(task, task_option)
        prompts = _prompts(the_task, input, limit, shots, demos, seed)
        stops = tuple(dict.fromkeys([*the_task.stop, *stop]))
        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  top_k=top_k, n=n, stop=stops, seed=seed)
        options = _backend_options(backend, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                                   dtype=dtype, device=device, base_url=base_url, concurrency=concurrency,
                                   tensor_parallel_size=tensor_parallel_size, data_parallel=data_parallel)
        before, start = _count_lines(out), time.perf_counter()
        try:
            records = generate(model, prompts, sampling, backend=backend, out_path=out, adapter=adapter,
                               progress=not quiet, **options)
        except GenerationError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        seconds = time.perf_counter() - start
    _report(out, backend, model, prompts, records, _count_lines(out) - before, seconds, as_json)


def _prompts(task, input: Path, limit: int | None, shots: int, demos: Path | None, seed: int) -> list[dict]:
    """Zero-shot prompts of INPUT's questions, or k-shot ones with demonstrations from --demos."""
    from w2s import steps

    questions = nonempty(steps.load_questions(task, str(input), limit), input)
    if shots <= 0:
        return steps.zero_shot_prompts(task, questions)
    if demos is None:
        raise ValueError("--shots needs --demos (a generations file to draw demonstrations from)")
    return steps.fewshot_prompts(task, questions, steps.read_generations(demos), shots, seed)


def _report(out: Path, backend: str, model: str, prompts: list, records: list[dict], new: int, seconds: float,
            as_json: bool) -> None:
    truncated = sum(r["finish_reason"] == "length" for r in records)
    summary = {"out": str(out), "backend": backend, "model": records[0]["model"] if records else model,
               "questions": len(prompts), "records": len(records), "generated_now": new, "truncated": truncated,
               "tokens": sum(r["n_tokens"] for r in records), "seconds": round(seconds, 2)}
    emit(summary, as_json, human=f"{len(records)} generations ({new} new, {truncated} truncated) -> {out}")


def _backend_options(backend: str, **o) -> dict:
    """Only the options the chosen backend understands."""
    if backend == "hf":
        return {k: o[k] for k in ("batch_size", "max_batch_tokens", "dtype", "device")}
    if backend == "vllm":
        return {"tensor_parallel_size": o["tensor_parallel_size"], "dtype": o["dtype"],
                "data_parallel": o["data_parallel"]}
    if backend == "openai":
        return {"base_url": o["base_url"], "concurrency": o["concurrency"]}
    return {}


def serve_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model dir or hub name."),
    port: int = typer.Option(8000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Use 0.0.0.0 to listen on all interfaces."),
    adapter: Optional[str] = typer.Option(None, "--adapter"),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name",
                                                    help="Name clients pass as 'model' (default: --model)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Most rows per batch (default: no limit "
                                             "but the token budget)."),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="W2S_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' (prefer the "
                                          "environment variable: a flag shows in the process list)."),
    max_n: int = typer.Option(64, "--max-n", help="Most completions per prompt ('n') a request may ask for."),
    max_queued: int = typer.Option(64, "--max-queued", help="Requests that may wait for the model (429 past it)."),
    max_connections: int = typer.Option(512, "--max-connections", help="Open connections (503 past it)."),
):
    """Serve MODEL on an OpenAI-compatible /v1/completions endpoint (hf backend)."""
    from w2s.generation.serve import serve

    with user_errors():
        if not api_key and os.environ.get("W2S_API_KEY") == "":
            api_key = ""  # set but empty: refused, never read as "no authentication"
        serve(model, host, port, adapter=adapter, served_name=served_model_name, batch_size=batch_size,
              dtype=dtype, device=device, api_key=api_key, max_n=max_n, max_queued=max_queued,
              max_connections=max_connections)


def register(app) -> None:
    app.command("generate")(generate_cmd)
    app.command("serve")(serve_cmd)
