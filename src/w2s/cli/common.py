"""Small helpers shared by the CLI modules: JSON summaries and error reporting."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import typer

from w2s.io import DataError


def emit(summary: dict, as_json: bool, human: str | None = None) -> None:
    """Print a human summary; with --json the LAST line of output is one JSON object."""
    if human:
        typer.echo(human)
    if as_json:
        sys.stdout.flush()
        typer.echo(json.dumps(summary, ensure_ascii=False))


def nonempty(records: list, path) -> list:
    """An input file with no records is an error, not an empty output with exit 0."""
    if not records:
        raise DataError(path, "has no records; nothing to do (nothing was written)")
    return records


@contextmanager
def user_errors():
    """Turn expected user errors into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except (DataError, FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except OSError as e:  # disk full, permissions, read-only file system: the writes are atomic, so
        #                   nothing half-written is left; say what and where, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{e.strerror or e} (writes are atomic: no file was left half-written)", err=True)
        raise typer.Exit(2) from None
