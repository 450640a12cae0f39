"""The toy world: a seeded procedural reasoning task and small base models pretrained for it.

    w2s.toy.problem     a problem: its step list and question sentences
    w2s.toy.world       problem generator, splits, independent step-list evaluator
    w2s.toy.solutions   the task's gold solutions (restated, equation forms, v21's plans)
    w2s.toy.tokenizer   word/number-level PreTrainedTokenizerFast (every integer 0..299 one token)
    w2s.toy.corpus      pretraining corpus in many surface formats, the task format held out
    w2s.toy.pretrain    pretraining of the weak and strong base models
    checkpoints/        the shipped weak and strong models (safetensors + tokenizer + manifest);
                        retired candidates' in git history (`RETIRED_CHECKPOINTS`)

`checkpoint_path("weak" | "strong")` returns the shipped model directory after checking every
file's sha256 against its manifest. See docs/toy_world.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from w2s.io import file_sha256
from w2s.toy.world import base_version

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
_VERIFIED: set[str] = set()
#: candidate worlds whose base models no later world uses, taken out of the package (2026-12-05) so
#: that the repository stays under the 64 MiB a GPU machine's working tree may hold; each is kept
#: in git history at this commit, restored with `git checkout COMMIT -- src/w2s/toy/checkpoints/vN`
RETIRED_CHECKPOINTS = dict.fromkeys(("v11", "v12", "v13", "v14", "v16", "v17", "v18"),
                                    "42d55759072f1b17bd58c146d57f91408596eebf")
RETIRED_CHECKPOINTS["v29"] = "ad7f27cbd6d1138ab6a31628289651f7d0c4b26c"   # v29's strong base (its weak base is v27's)


class CheckpointError(ValueError):
    """A shipped checkpoint is missing or does not match its manifest."""


def verify_checkpoint(path: str | Path) -> dict:
    """Check every file listed in `path/manifest.json` against its sha256; returns the manifest."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.exists():
        raise CheckpointError(f"{path}: no manifest.json (run `w2s toy pretrain`?)")
    manifest = json.loads(mf.read_text())
    for name, digest in manifest["files"].items():
        f = path / name
        if not f.exists():
            raise CheckpointError(f"{f}: missing (listed in the manifest)")
        if file_sha256(f) != digest:
            raise CheckpointError(f"{f}: sha256 does not match the manifest")
    return manifest


def checkpoint_path(which: str, verify: bool = True, world: str = "v10") -> Path:
    """Directory of a shipped base model ("weak" or "strong") of a world version, loadable with
    `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`. v10's are
    `checkpoints/{weak,strong}`, a later version's `checkpoints/<version>/{weak,strong}` (or, for a
    version that changes only the task, those of the version it takes that model from:
    `world.SHARED_BASES`)."""
    if which not in ("weak", "strong"):
        raise ValueError(f"unknown toy checkpoint {which!r}; expected 'weak' or 'strong'")
    world = base_version(world, which)
    path = CHECKPOINTS / which if world == "v10" else CHECKPOINTS / world / which
    if world in RETIRED_CHECKPOINTS and not path.exists():
        raise CheckpointError(f"world {world}'s base models were retired from the package (docs/toy_world.md, "
                              f"'Retired checkpoints'); restore them from git history with `git checkout "
                              f"{RETIRED_CHECKPOINTS[world]} -- src/w2s/toy/checkpoints/{world}`")
    if verify and str(path) not in _VERIFIED:
        verify_checkpoint(path)
        _VERIFIED.add(str(path))
    return path


def manifest(which: str) -> dict:
    return json.loads((checkpoint_path(which, verify=False) / "manifest.json").read_text())
