"""The `w2s` command line: typer commands that parse arguments, read files and call `w2s.steps`
(or the library module that owns the work); the work itself lives there.

Each area registers its commands from its own module:
  data.py   grade, select, pairs, export       (core)
  gen.py    generate                            (generation)
  train.py  train sft|dpo|orpo, merge, eval     (training)
  run.py    run, status, report                 (pipeline)
  demo.py   demo                                (the toy world, end to end)
  toy.py    toy data, toy pretrain              (toy world)
  datasets.py  data gsm8k, data math            (the paper's data)
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Weak-to-strong reasoning: improve a strong model with a weak model's supervision.")


def _register() -> None:
    from w2s.cli import data, datasets, demo, gen, run, toy, train

    for module in (data, datasets, gen, train, run, demo, toy):
        module.register(app)


def main() -> None:
    _register()
    app()
