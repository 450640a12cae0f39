"""How a run config names a dataset on the Hugging Face Hub: `hf:NAME[:CONFIG][@SPLIT][?FIELD=COLUMN&...]`,
or the same as a mapping, `{hub: NAME, config: CONFIG, split: SPLIT, fields: {FIELD: COLUMN}}`
(`fields`: which of the dataset's columns holds each field the task reads, e.g.
`{question: problem}`)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

MAPPING_KEYS = ("hub", "config", "split", "fields")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class HubSpec:
    """A hub dataset, its configuration and split (None: not named), and column renames."""

    name: str
    config: str | None
    split: str | None
    fields: tuple[tuple[str, str], ...] = ()   # (record field, dataset column)

    def __str__(self) -> str:
        query = "&".join(f"{field}={column}" for field, column in self.fields)
        return (f"hf:{self.name}" + (f":{self.config}" if self.config else "") + (f"@{self.split}" if self.split else "")
                + (f"?{query}" if query else ""))


def parse_hub_spec(spec: str) -> HubSpec:
    """`hf:openai/gsm8k:main@test` -> HubSpec("openai/gsm8k", "main", "test");
    `hf:HuggingFaceH4/MATH-500@test?question=problem` also renames column `problem` to `question`."""
    if not spec.startswith("hf:"):
        raise ValueError(f"{spec!r} is not a hub dataset (hf:NAME[:CONFIG][@SPLIT])")
    rest, q, query = spec[3:].partition("?")
    body, at, split = rest.partition("@")
    name, _, config = body.partition(":")
    fields = tuple(tuple(kv.partition("=")[::2]) for kv in query.split("&")) if q else ()
    if (not name or (at and not split) or any(c.isspace() for c in spec)
            or any(not _NAME.match(f) or not _NAME.match(c) for f, c in fields)):
        raise ValueError(f"{spec!r}: expected hf:NAME[:CONFIG][@SPLIT][?FIELD=COLUMN&...], e.g. "
                         "hf:openai/gsm8k:main@test")
    return HubSpec(name, config or None, split or None, fields)


def hub_spec_from_mapping(value: dict) -> str:
    """`{hub, config, split, fields}` -> its `hf:` string (checked the same way)."""
    for key in value:
        if key not in MAPPING_KEYS:
            near = difflib.get_close_matches(str(key), MAPPING_KEYS, n=1)
            raise ValueError(f"unknown key {key!r} in a hub dataset mapping (keys: {', '.join(MAPPING_KEYS)})"
                             + (f"; did you mean {near[0]!r}?" if near else ""))
    if not isinstance(value.get("hub"), str):
        raise ValueError("a hub dataset mapping needs `hub: NAME` (e.g. hub: openai/gsm8k)")
    for key in ("config", "split"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"{key}: expected a string, got {value[key]!r}")
    fields = value.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ValueError(f"fields: expected a mapping of field: column names, got {fields!r}")
    spec = str(HubSpec(value["hub"], value.get("config"), value.get("split"), tuple(fields.items())))
    parse_hub_spec(spec)
    return spec


def load_rows(hub: HubSpec, split: str) -> list[dict]:
    """A hub split's rows (network: the hub, or the datasets cache), each column named in
    `fields` renamed to its field."""
    import datasets

    rows = [dict(r) for r in datasets.load_dataset(hub.name, hub.config, split=split)]
    for r in rows:
        r.update({field: r.pop(column) for field, column in hub.fields if column in r})
    return rows
