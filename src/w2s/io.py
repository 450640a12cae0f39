"""Reading and writing records: JSONL, JSON arrays, parquet/CSV and Hugging Face datasets.
Every data error is a `DataError` naming the file, the row (1-based) and the field. Every write
is atomic (temp file + rename), except `JsonlAppender`'s stream for resumable work, whose torn
last line `read_jsonl(..., tolerate_partial_tail=True)` drops."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from w2s.hub_spec import HubSpec, load_rows, parse_hub_spec  # noqa: F401  (re-exported)


class DataError(ValueError):
    """A problem with an input file, located precisely."""

    def __init__(self, path: str | os.PathLike | None, message: str, row: int | None = None,
                 field: str | None = None):
        self.path, self.row, self.field = (str(path) if path is not None else None), row, field
        where = []
        if self.path:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        self.message = message
        super().__init__(f"{': '.join([', '.join(where)] if where else [])}{': ' if where else ''}{message}")

    def __reduce__(self):  # picklable across worker processes (the default would lose fields)
        return (DataError, (self.path, self.message, self.row, self.field))


class JSONSyntaxError(DataError):
    """Text that is not JSON at all (a torn last line of a streamed file is one)."""
    detail = ""  # "line L col C: message", for messages that place it themselves


class _DuplicateKey(ValueError):
    """Raised by the object hook with the repeated key as its argument."""


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(text: str, path: str | os.PathLike | None, row: int | None = None) -> Any:
    """`json.loads` for untrusted files: a duplicate key, nesting past Python's recursion limit and a
    lone UTF-16 surrogate escape (not text: writing it fails) are DataErrors naming file, row, key."""
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except _DuplicateKey as e:
        raise DataError(path, "duplicate key in one JSON object (which value is meant?)", row, e.args[0]) from None
    except json.JSONDecodeError as e:
        where = f"column {e.colno}" if row else f"line {e.lineno} column {e.colno}"
        err = JSONSyntaxError(path, f"invalid JSON ({e.msg} at {where})", row)
        err.detail = f"line {e.lineno} col {e.colno}: {e.msg}"
        raise err from None
    except RecursionError:
        raise DataError(path, "JSON nested too deeply to read", row=row) from None
    if "\\ud" in text or "\\uD" in text:  # the only way a lone surrogate gets past UTF-8 decoding
        field = _lone_surrogate_field(value)
        if field is not None:
            raise DataError(path, "holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair), "
                                  "which is not text", row=row, field=field or None)
    return value


def _lone_surrogate_field(value: Any) -> str | None:
    """The top-level key under which a string or key holds a lone surrogate ("" for the value
    itself), or None. Iterative: rows may nest up to the recursion limit."""
    stack = [(value, "")]
    while stack:
        v, top = stack.pop()
        if isinstance(v, str) and _SURROGATE.search(v):
            return top
        if isinstance(v, dict):
            stack.extend([(k, top or k) for k in v] + [(x, top or k) for k, x in v.items()])
        elif isinstance(v, list):
            stack.extend((x, top) for x in v)
    return None


def check_duplicate_ids(records: Sequence[dict], path: str | os.PathLike | None,
                        fields: Sequence[str] = ("id",)) -> None:
    """Rows with the same `fields` (id; id and sample_index) must be one record: a repeat is
    harmless (a resumed run may write one); a conflict, which would count by accident, is a
    DataError naming both rows."""
    first: dict[tuple, int] = {}
    for i, r in enumerate(records if fields else (), 1):
        if "id" in fields and "id" not in r:
            continue  # ids are given later (by row index) to rows without one
        key = tuple(json.dumps(r.get(f), sort_keys=True) for f in fields)
        j = first.setdefault(key, i)
        if j != i and records[j - 1] != r:
            shown = ", ".join(f"{f} {r.get(f)!r}" for f in fields)
            raise DataError(path, f"rows {j} and {i} have the same {shown} but different contents "
                                  "(which one counts?); remove one", row=i, field=fields[0])


def _coerce_ids(records: list[dict], path: str) -> list[dict]:
    for i, r in enumerate(records, 1):
        if "id" in r and not isinstance(r["id"], str):
            if isinstance(r["id"], float) and r["id"].is_integer():
                r["id"] = str(int(r["id"]))  # 3.0 from a CSV/parquet column is id "3"
            elif isinstance(r["id"], (int, float)) and not isinstance(r["id"], bool):
                r["id"] = str(r["id"])
            else:
                raise DataError(path, f"expected a string or integer id, got {type(r['id']).__name__}",
                                row=i, field="id")
    return records


def read_jsonl(path: str | os.PathLike, tolerate_partial_tail: bool = False) -> list[dict]:
    path = str(path)
    if not os.path.exists(path):
        raise DataError(path, "file not found")
    out = []
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    ends_with_newline = bool(raw_lines) and raw_lines[-1] == b""
    if ends_with_newline:
        raw_lines.pop()
    lines = []
    for i, raw in enumerate(raw_lines, 1):
        try:
            lines.append(raw.decode("utf-8-sig" if i == 1 else "utf-8"))  # tolerate a BOM
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text (byte {e.start + 1} of the line)", row=i) from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = parse_json(line, path, row=i)
        except JSONSyntaxError:
            if tolerate_partial_tail and i == len(lines) and not ends_with_newline:
                break  # torn final line from an interrupted append
            raise
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", row=i)
        out.append(obj)
    return out


def read_records(source: str | os.PathLike, required: Sequence[str] = (), *,
                 rename: dict[str, str] | None = None, split: str | None = None,
                 unique: Sequence[str] | None = None) -> list[dict]:
    """Read records from a .jsonl / .json (array) / .parquet / .csv file, a directory saved with
    `datasets.save_to_disk`, or `hf:NAME[:CONFIG][@SPLIT]` (needs network; split `train` when
    none is named nor given).

    `rename` maps file field names to record field names ({"problem": "question"}).
    `required` fields must be present and non-null on every row (checked after renaming).
    Integer ids become strings. Two rows with the same `unique` fields must be identical
    (`check_duplicate_ids`); by default ("id", "sample_index") when rows carry a sample_index
    (generations), ("id",) when they carry a question, else none (pairs may share an id).
    """
    src = str(source)
    if src.startswith("hf:"):
        hub = parse_hub_spec(src)
        records = _read_hf_hub(hub, split or hub.split or "train")
    else:
        p = Path(src)
        if not p.exists():
            raise DataError(src, "file not found")
        if p.is_dir():
            records = _read_hf_disk(p, split)
        elif p.suffix == ".jsonl":
            records = read_jsonl(p)
        elif p.suffix == ".json":
            records = _read_json_array(p)
        elif p.suffix in (".parquet", ".csv"):
            import datasets

            ds = datasets.load_dataset(p.suffix[1:], data_files=str(p), split="train")
            records = [dict(r) for r in ds]
        else:
            raise DataError(src, "unsupported file type (expected .jsonl, .json, .parquet, .csv "
                                 "or a datasets directory)")
    if rename:
        for r in records:
            for old, new in rename.items():
                if old in r and old != new:
                    r[new] = r.pop(old)
    for i, r in enumerate(records, 1):
        for f in required:
            if f not in r:
                raise DataError(src, f"missing required field (row has: {', '.join(sorted(r)) or 'nothing'})",
                                row=i, field=f)
            if r[f] is None:
                raise DataError(src, "required field is null (expected a value)", row=i, field=f)
    records = _coerce_ids(records, src)
    shape = records[0] if records else {}  # generation records: one per sample; questions: one per id
    default = ("id", "sample_index") if "sample_index" in shape else ("id",) if "question" in shape else ()
    check_duplicate_ids(records, src, default if unique is None else unique)
    return records


def _read_json_array(p: Path) -> list[dict]:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(p, f"not UTF-8 text (byte {e.start + 1})") from None
    data = parse_json(text, p)
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(p, "expected a JSON array of objects")
    for i, r in enumerate(data, 1):
        if not isinstance(r, dict):
            raise DataError(p, f"expected a JSON object, got {type(r).__name__}", row=i)
    return data


def _read_hf_disk(p: Path, split: str | None) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001 - datasets raises many types; report them uniformly
        raise DataError(str(p), f"not a saved datasets directory ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise DataError(str(p), f"several splits {list(ds)}; choose one")
            split = next(iter(ds))
        ds = ds[split]
    return [dict(r) for r in ds]


def _read_hf_hub(hub: HubSpec, split: str) -> list[dict]:
    where = f"hf:{hub.name}" + (f":{hub.config}" if hub.config else "") + f"@{split}"
    try:
        return load_rows(hub, split)
    except Exception as e:  # noqa: BLE001
        raise DataError(where, f"could not load from the hub ({e})") from None


def _looks_like_path(name: str) -> bool:
    """A model name that can only be a local path (a hub id is 'name' or 'org/name')."""
    if name.startswith(("/", "./", "../", "~")) or name.endswith("/") or os.sep != "/" and os.sep in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))  # models/typo: a local dir


def check_output(out: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None] = (), *,
                 is_dir: bool = False, models: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse, before anything is written, an output that would destroy an input or cannot be
    written: `out` is an input, contains one, or lies inside an input directory; `out` is a
    directory where a file is expected (or a file where a directory is); a local `models` path
    that does not exist. Models count as inputs. Raises DataError (one line, naming the path)."""
    for m in models:
        if m is not None and not Path(m).expanduser().exists() and _looks_like_path(str(m)):
            raise DataError(m, "model path not found")
    if out is None:
        return
    o = Path(out).expanduser().resolve()
    for inp in [*inputs, *models]:
        if inp is None or not Path(inp).expanduser().exists():
            continue  # not local (a hub name, a served model): nothing here to overwrite
        i = Path(inp).expanduser().resolve()
        if o == i or (o.exists() and os.path.samefile(o, i)):
            raise DataError(out, f"output is the input {inp}; choose another output path")
        if o in i.parents:
            raise DataError(out, f"output directory contains the input {inp}; choose another output path")
        if i.is_dir() and i in o.parents:
            raise DataError(out, f"output is inside the input directory {inp}; choose another output path")
    if is_dir and o.exists() and not o.is_dir():
        raise DataError(out, "is a file; expected a directory")
    if not is_dir and o.is_dir():
        raise DataError(out, "is a directory; expected a file path")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def _atomic_write_text(path: str | os.PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None  # say which file (disk full, ...)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    def w(f):
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    _atomic_write_text(path, w)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value; a file that is not valid JSON is a DataError naming it and the spot."""
    try:
        return parse_json(Path(path).read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError:
        raise DataError(path, "not valid JSON (not UTF-8 text); restore it, or delete it and rerun what "
                              "writes it") from None
    except JSONSyntaxError as e:
        raise DataError(path, f"not valid JSON ({e.detail}); restore it, or delete it and rerun what writes it") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    _atomic_write_text(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic_write_text(path, lambda f: f.write(text))


class JsonlAppender:
    """Append records to a JSONL file as work completes (for resumable generation).

    Each `append` writes whole lines and fsyncs, so at most the last line can be torn by a
    crash; read back with `read_jsonl(path, tolerate_partial_tail=True)`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        # Drop a torn last line so new appends start on a fresh line.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)

    def append(self, records: Iterable[dict]) -> None:
        for r in records:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def records_sha256(records: Iterable[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()
