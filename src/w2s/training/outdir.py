"""Writing a model directory without ever losing one.

A new model is built in a staging directory beside OUT (`.OUT.w2s-<tag>`, deterministic so an
interrupted training run finds its checkpoints again) and swapped in only once it is complete
(DONE written): OUT is renamed to `.OUT.w2s-old`, the staging directory to OUT, then the old one
is deleted. A crash at any point leaves the old or the new complete model; the one gap (between
the two renames) is repaired by `recover`, which every writer calls first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from w2s.io import check_output
from w2s.training import lineage as lin

CHECKPOINTS = "checkpoints"
ADAPTER_TMP = ".adapter"
_OLD = "old"


def _norm(out) -> Path:
    out = Path(os.path.abspath(out))  # "OUT/", "." and ".." have a name and a parent to swap in
    if not out.name:
        raise ValueError(f"{out} cannot be an output directory")
    return out


def staging_dir(out: Path, tag: str) -> Path:
    out = _norm(out)
    return out.parent / f".{out.name}.w2s-{tag}"


def check_replaceable(out: Path) -> None:
    """Refuse to replace a non-empty directory that no w2s writer made, or the working directory
    (it is swapped out by renaming: the shell would be left in a deleted directory)."""
    o, cwd = Path(os.path.realpath(out)), Path(os.path.realpath(os.getcwd()))
    if o == cwd or o in cwd.parents:
        raise ValueError(f"{out} is or contains the current directory; choose another output directory")
    if out.is_dir() and any(out.iterdir()):
        if not any((out / n).exists() for n in (lin.LINEAGE, lin.DONE, CHECKPOINTS, ADAPTER_TMP)):
            raise ValueError(f"{out} exists and is not a w2s model directory; refusing to replace it")


def recover(out: Path) -> None:
    """Finish a swap that a crash interrupted."""
    out = _norm(out)
    old = staging_dir(out, _OLD)
    if not old.exists():
        return
    if out.exists():
        shutil.rmtree(old)      # the new model is in place: the old one was about to be deleted
    else:
        os.rename(old, out)     # crashed between the two renames: put the old model back


def remove_stale_stages(out: Path, keep: Path | None = None) -> None:
    """Staging directories of OUT from runs with other inputs (never resumable now)."""
    out = _norm(out)
    prefix = staging_dir(out, "").name
    if not out.parent.is_dir():
        return
    for p in out.parent.iterdir():
        if p.name.startswith(prefix) and p != keep and p.name != staging_dir(out, _OLD).name:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def fresh_stage(out: Path, tag: str) -> Path:
    """An empty staging directory for a writer that does not resume (copy, merge)."""
    stage = staging_dir(out, tag)
    remove_stale_stages(out)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, out: Path, complete=lin.is_complete) -> Path:
    """Swap the complete directory `stage` in as `out` (see the module docstring); `complete`
    says whether a directory is whole (a trained model: DONE written)."""
    if not complete(stage):
        raise RuntimeError(f"{stage} is not complete; not replacing {out}")
    out = _norm(out)
    recover(out)
    if out.exists():
        old = staging_dir(out, _OLD)
        os.rename(out, old)
        os.rename(stage, out)
        _fsync_dir(out.parent)
        shutil.rmtree(old)
    else:
        os.rename(stage, out)
        _fsync_dir(out.parent)
    return out


def untrained_copy(model: str | os.PathLike, out_dir: str | os.PathLike, reason: str) -> Path:
    """Training on an empty set leaves the model unchanged: write it to `out_dir` as it is, with
    lineage saying why, so that what follows (evaluation, the next stage) sees a complete model.
    Built beside `out_dir` and swapped in complete; never over an input."""
    out, src = Path(out_dir), Path(model)
    check_output(out, is_dir=True, models=[model])
    recover(out)
    check_replaceable(out)
    tmp = fresh_stage(out, "copy")
    if src.is_dir():
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(lin.DONE, lin.LINEAGE, CHECKPOINTS, "logs"),
                        dirs_exist_ok=True)
    else:  # a hub name
        from transformers import AutoModelForCausalLM, AutoTokenizer

        AutoModelForCausalLM.from_pretrained(str(model), use_safetensors=True).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(model)).save_pretrained(tmp)
    lin.write_lineage(tmp, {"base_model": str(model), "untrained": True, "reason": reason,
                            "base_lineage": lin.read_lineage(src) if src.is_dir() else None})
    lin.mark_done(tmp)
    return publish(tmp, out)


def _fsync_dir(path: Path) -> None:
    # make the renames durable (a power loss must not bring the old name back after success)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
