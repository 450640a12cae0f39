"""The four record shapes everything in w2s speaks. Plain dicts, documented once.

question    {"id": str, "question": str, "answer"?: str, "solution"?: str}
            `answer` is the gold FINAL answer (hidden from the strong model; used for
            diagnostics and scoring), `solution` the gold chain of thought (gold-SFT ceiling
            and weak-model training only).
generation  {"id": str, "prompt": str, "response": str, "sample_index": int,
             "finish_reason": "stop" | "length", "n_tokens": int, "model": str}
            Several records may share an `id` (n samples), told apart by `sample_index`.
sft         {"id": str, "prompt": str, "completion": str}
preference  {"id": str, "prompt": str, "chosen": str, "rejected": str}

Records are joined by `id`, never by position. Ids are strings (integers read from
files are converted). Extra keys are allowed and carried along.
"""

from __future__ import annotations

from typing import Iterable

# Required fields of each shape (what readers check before training or exporting).
QUESTION_FIELDS = ("id", "question")
GENERATION_FIELDS = ("id", "prompt", "response")
SFT_FIELDS = ("id", "prompt", "completion")
PREFERENCE_FIELDS = ("id", "prompt", "chosen", "rejected")


def group_by_id(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Group records (e.g. n samples per question) by id, ordered by sample_index."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str(r["id"]), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r.get("sample_index", 0))
    return groups
