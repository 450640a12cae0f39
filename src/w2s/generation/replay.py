"""The `replay` backend: answer from recorded generation records instead of a model.

`model` is the path of a JSONL (or any w2s-readable) file of generation records. Used by the
CLI's recorded-generations mode, e.g. to run the method on the weak outputs shipped in
../shared/data without the weak model. Records may lack `sample_index` (read as 0),
`finish_reason` (read as "stop") and `n_tokens` (read as 0). The returned record keeps the
prompt that was asked for; the recorded model name is kept when the file has one.
"""

from __future__ import annotations

from typing import Iterator

from w2s.generation.sampling import GenerationError, SamplingConfig, WorkItem
from w2s.io import read_records


class ReplayBackend:
    # recorded samples of one prompt may differ even when the run says greedy
    deduplicate_greedy = False

    def __init__(self, model: str, adapter: str | None = None):
        if adapter:
            raise ValueError("the replay backend takes no adapter (it reads recorded outputs)")
        self.path = str(model)
        self.recorded = {}
        for r in read_records(self.path, required=("id", "response")):
            self.recorded[(str(r["id"]), int(r.get("sample_index", 0)))] = r

    def run(self, items: list[WorkItem], sampling: SamplingConfig) -> Iterator[list[dict]]:
        missing = [it for it in items if (it.id, it.sample_index) not in self.recorded]
        if missing:
            shown = ", ".join(f"{it.id}#{it.sample_index}" for it in missing[:5])
            raise GenerationError(f"{self.path} has no recorded generation for {len(missing)} of "
                                  f"{len(items)} requested samples (e.g. {shown})")
        out = []
        for it in items:
            rec = self.recorded[(it.id, it.sample_index)]
            result = {"id": it.id, "sample_index": it.sample_index, "response": rec["response"],
                      "finish_reason": rec.get("finish_reason") or "stop",
                      "n_tokens": int(rec.get("n_tokens") or 0)}
            if rec.get("model"):
                result["model"] = rec["model"]
            out.append(result)
        yield out
