"""`w2s data gsm8k|math --out DIR`: the paper's splits, from the authors' pinned release (or an
offline copy with --from), checked by sha256 (w2s.datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from w2s.cli.common import emit, user_errors

data_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="The paper's data: GSM8K train_1 / train_2 / test, MATH500.")


def _write(name: str, out: Path, source: Optional[Path], force: bool, as_json: bool) -> None:
    from w2s.datasets import write_dataset

    with user_errors():
        try:
            provenance = write_dataset(name, out, source, force=force)
        except ConnectionError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except FileExistsError as e:
            raise ValueError(str(e)) from None
    files = provenance["files"]
    emit(provenance, as_json, human=f"{name}: " + ", ".join(f"{s} {f['rows']}" for s, f in files.items())
         + f" -> {out} (sha256 checked; SOURCE.json says where from)")


@data_app.command("gsm8k")
def gsm8k(out: Path = typer.Option(Path("data/gsm8k"), "--out", help="Output directory."),
          source: Optional[Path] = typer.Option(None, "--from", help="An offline copy of the released files."),
          force: bool = typer.Option(False, "--force", help="Replace existing different files."),
          as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON.")):
    """GSM8K as in the paper: train_1 7000 (with the augmented rows), train_2 7000, test 1319."""
    _write("gsm8k", out, source, force, as_json)


@data_app.command("math")
def math(out: Path = typer.Option(Path("data/math"), "--out", help="Output directory."),
         source: Optional[Path] = typer.Option(None, "--from", help="An offline copy of the released files."),
         force: bool = typer.Option(False, "--force", help="Replace existing different files."),
         as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON.")):
    """MATH500 (the paper's test split). The authors released no train_1 / train_2 split of MATH."""
    _write("math", out, source, force, as_json)


def register(app) -> None:
    app.add_typer(data_app, name="data")
