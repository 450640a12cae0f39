"""`w2s toy ...`: the toy world (data generation, pretraining of the base models).
`w2s demo`, the whole method on the toy world, is `cli/demo.py` over `w2s.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2s.cli.common import emit, user_errors
from w2s.toy.world import VERSIONS

LATEST = VERSIONS[-1]   # the help names the candidates up to the newest world

toy_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="The toy world: a seeded reasoning task and its small base models.")


@toy_app.command("data")
def data(out: Path = typer.Option(..., "--out", help="Directory for train_1/train_2/test.jsonl."),
         seed: int = typer.Option(0, "--seed", help="World seed (the test split depends only on it)."),
         n_train_1: int = typer.Option(2000, "--n-train-1", min=0, help="Labeled questions (weak training)."),
         n_train_2: int = typer.Option(2000, "--n-train-2", min=0, help="Unlabeled questions (strong training)."),
         n_test: int = typer.Option(500, "--n-test", min=0, help="Test questions."),
         n_dev: int = typer.Option(0, "--n-dev", min=0, help="Labeled dev questions for choosing settings "
                                                      "(drawn last: the other splits do not change)."),
         min_steps: int = typer.Option(2, "--min-steps"),
         max_steps: int = typer.Option(5, "--max-steps"),
         max_operand: Optional[int] = typer.Option(None, "--max-operand",
                                                    help=f"Largest operand of add/sub (default: the world's, 99; v14-{LATEST}: 20)."),
         max_distractors: int = typer.Option(2, "--max-distractors"),
         world: str = typer.Option("v10", "--world", help="World version: v10 (every published number) or a "
                                                        f"candidate v11-{LATEST} (docs/toy_world.md)."),
         decontaminate: bool = typer.Option(True, "--decontaminate/--no-decontaminate",
                                            help="Redraw problems that occur in the shipped models' "
                                                 "pretraining corpus (same text or step list)."),
         as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line.")):
    """Write a seeded toy-world dataset: train_1.jsonl, train_2.jsonl, test.jsonl (and dev.jsonl)."""
    from w2s.toy.data import write_splits
    from w2s.toy.world import WorldConfig

    with user_errors():
        cfg = WorldConfig(min_steps=min_steps, max_steps=max_steps, max_operand=max_operand,
                          max_distractors=max_distractors, version=world)
        sizes = {"train_1": n_train_1, "train_2": n_train_2, "test": n_test, "dev": n_dev}
        write_splits(out, seed, sizes, cfg, decontaminate=decontaminate)
    emit({"out": str(out), "seed": seed, **sizes}, as_json,
         human=f"wrote {n_train_1} / {n_train_2} / {n_test}{f' / {n_dev}' if n_dev else ''} questions to {out} "
               f"(seed {seed})")


@toy_app.command("pretrain")
def pretrain_cmd(out: Path = typer.Option(..., "--out", help="Directory for weak/ and strong/."),
                 seed: int = typer.Option(0, "--seed", help="Corpus and initialisation seed."),
                 only: str = typer.Option("", "--only", help="'weak' or 'strong' (default: each model the world "
                                                             "does not take from another)."),
                 world: str = typer.Option("v10", "--world", help="World version whose corpus to train on "
                                                                f"(v10: the shipped models; v11-{LATEST}: candidates, docs/toy_world.md); "
                                                                "only the models the world does not take from another."),
                 threads: int = typer.Option(0, "--threads",
                                             help="torch threads (default: 2, or 1 on a busy machine)."),
                 device: str = typer.Option("cpu", "--device", help="'cpu' or a torch device such as 'cuda' "
                                            "(fp32 either way; the manifest records it)."),
                 as_json: bool = typer.Option(False, "--json")):
    """Pretrain the toy world's weak and strong base models (CPU: 18-35 minutes; one GPU: ~3)."""
    from w2s.toy.pretrain import RECIPES, pretrain
    from w2s.toy.world import SHARED_BASES, base_version

    with user_errors():
        if only not in ("", "weak", "strong"):
            raise ValueError("--only must be 'weak' or 'strong'")
        if world not in RECIPES and world not in SHARED_BASES:
            raise ValueError(f"--world must be one of {', '.join(RECIPES)}, got {world!r}")
        owned = tuple(r for r in ("weak", "strong") if base_version(world, r) == world)
        which = (only,) if only else owned
        if not which or not set(which) <= set(owned):  # a model another world pretrained and ships
            borrowed = " and ".join(f"{base_version(world, r)}'s {r}" for r in ("weak", "strong") if r not in owned)
            raise ValueError(f"--world {world} uses {borrowed} base model: pretrain that world's instead")
        paths = pretrain(out, seed=seed, which=which, log=typer.echo, threads=threads or None, world=world,
                         device=device)
    emit({k: str(v) for k, v in paths.items()}, as_json)


def register(app) -> None:
    app.add_typer(toy_app, name="toy")
