"""The paper's data, one command: `w2s data gsm8k --out data/gsm8k`.

Where it comes from: the authors' released files (GAIR-NLP/weak-to-strong-reasoning) at a
pinned commit, each checked by its sha256 before anything is written. Pinned files rather than
the hub dataset plus id lists because the paper's train_1 / train_2 split of GSM8K includes the
Abel-augmented rows (ids `aug_*`) that are in no hub dataset, and a byte-exact file is the only
way to be sure two labs ran on the same split. `--from DIR` takes an offline copy of the same
files (checked against the same hashes).

    GSM8K  train_1 7000 (with the augmented rows) / train_2 7000 / test 1319
    MATH   test = MATH500 (the authors' data/test/math.jsonl); the authors released no raw
           train_1 / train_2 split of MATH's training set, so `w2s data math` writes the test
           split only and says so (split MATH's 7,500 training problems yourself, e.g. with the
           `custom` task and `limit_*`, and record the rule you used).

Each split is written in the task's own row format with an `id` on every row, atomically, and
`SOURCE.json` records where every file came from. An existing different output is refused
unless `force`.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from w2s.io import DataError, check_output, write_json, write_jsonl

REPO = "GAIR-NLP/weak-to-strong-reasoning"
COMMIT = "596a0b61166a91e9677e1940ae06ec4f84878cae"
URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/"
TIMEOUT_S = 60
MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class Released:
    """One released file: its path in the repository, sha256 and row count."""

    path: str
    sha256: tuple[str, ...]   # the released file's; more where a byte-identical copy circulates in another form
    rows: int


DATASETS = {
    "gsm8k": {"train_1": Released("data/raw/gsm8k/train_1.jsonl",
                                  ("56bfcd6cf297971be61d04026f0a86cd0754c2b139ae5f0429cdc4044ae6d4df",), 7000),
              "train_2": Released("data/raw/gsm8k/train_2.jsonl",
                                  ("40c3be7cd6bdf2a09ffe74fc89d8fdfe9c1a82d4e13070ed1ed7a3e1eb3aac5e",), 7000),
              "test": Released("data/test/gsm8k.jsonl",
                               ("e27b1fa2bc24ce3201df4ecd62465b97eb3c8cfbb69f44780bb1c88007000244",), 1319)},
    # MATH500: the authors' file, or the same 500 problems as HuggingFaceH4/MATH-500's test.jsonl
    # (problem / solution / answer / subject / level / unique_id), which the math task reads too
    "math": {"test": Released("data/test/math.jsonl",
                              ("927235976b3902585c2d3d8d189008d2fdce596847d99312329f0843057f4155",
                               "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"), 500)},
}


def fetch(released: Released, source: Path | None, split: str) -> bytes:
    """The file's bytes from `source` (a directory holding it under its base name or its
    repository path) or from the pinned URL; refused unless its sha256 matches."""
    if source is not None:
        candidates = [source / Path(released.path).name, source / released.path, source / f"{split}.jsonl"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(source, f"has no {Path(released.path).name} (nor {released.path}, {split}.jsonl)")
        data, origin = found.read_bytes(), str(found)
    else:
        data, origin = download(URL + released.path), URL + released.path
    digest = hashlib.sha256(data).hexdigest()
    if digest not in released.sha256:
        raise DataError(origin, f"sha256 {digest[:16]}... is not the released file's {released.sha256[0][:16]}... "
                                "(a different or damaged copy)")
    return data


def download(url: str) -> bytes:
    """`url`'s bytes, bounded in time and size; no network is one clear line saying what to do."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (a pinned https URL)
            data = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"cannot download {url} ({reason}): without network, copy the authors' files "
                              f"({REPO} at {COMMIT[:12]}) to a folder and pass --from FOLDER") from None
    if len(data) > MAX_BYTES:
        raise DataError(url, f"larger than {MAX_BYTES >> 20} MiB: not the released file")
    return data


def rows_of(data: bytes, released: Released, split: str, name: str) -> list[dict]:
    """The file's rows, each with an id (`{name}-{split}-{i}` where the release has none)."""
    rows = []
    for i, line in enumerate(data.decode("utf-8").splitlines()):
        if line.strip():
            row = json.loads(line)
            rows.append({"id": row.get("id", f"{name}-{split}-{i}"), **{k: v for k, v in row.items() if k != "id"}})
    if len(rows) != released.rows:
        raise DataError(released.path, f"{len(rows)} rows, expected {released.rows}")
    return rows


def write_dataset(name: str, out: str | Path, source: str | Path | None = None, force: bool = False) -> dict:
    """Write dataset `name`'s splits into OUT (OUT/<split>.jsonl + OUT/SOURCE.json); returns the
    provenance record. Every file is fetched and checked before the first one is written."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    out = Path(out)
    src = Path(source) if source is not None else None
    check_output(out, [src] if src else [], is_dir=True)
    splits = {split: rows_of(fetch(r, src, split), r, split, name) for split, r in DATASETS[name].items()}
    provenance = {"dataset": name, "repository": REPO, "commit": COMMIT,
                  "files": {split: {"path": r.path, "sha256": hashlib.sha256(_jsonl_bytes(splits[split])).hexdigest(),
                                    "released_sha256": list(r.sha256), "rows": r.rows,
                                    "from": str(src) if src else URL + r.path}
                            for split, r in DATASETS[name].items()}}
    for split, rows in splits.items():
        target = out / f"{split}.jsonl"
        if target.exists() and not force and target.read_bytes() != _jsonl_bytes(rows):
            raise FileExistsError(f"{target} exists with other content: pass --force to replace it")
    for split, rows in splits.items():
        write_jsonl(out / f"{split}.jsonl", rows)
    write_json(out / "SOURCE.json", provenance)
    return provenance


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
