"""Generation: one `generate(...)` over the `hf`, `vllm`, `openai` and `replay` backends, with
resumable JSONL output. See docs/architecture.md for the contract.

    from w2s.generation import SamplingConfig, generate
    gens = generate("path/to/model", [{"id": "q1", "prompt": "Question: ...\\nAnswer:"}],
                    SamplingConfig(max_new_tokens=256, stop=("\\nQuestion:",)), out_path="g.jsonl")

    with keep_engines():  # vllm: one engine start for several calls with the same model
        ...
"""

from w2s.generation.sampling import (SPEED_ONLY_OPTIONS, GenerationError, SamplingConfig, WorkItem, cut_at_stop,
                                   derive_seed)
from w2s.generation.resumable import BACKENDS, generate, make_backend
from w2s.generation.vllm import keep_engines


def unload() -> None:
    """Free what generation holds before training on the same device: the model cached by the
    `hf` backend and the vLLM engines kept by `keep_engines()` (their processes exit)."""
    from w2s.generation import vllm
    from w2s.generation.hf import unload as _unload

    _unload()
    vllm.unload()


__all__ = ["BACKENDS", "SPEED_ONLY_OPTIONS", "GenerationError", "SamplingConfig", "WorkItem", "cut_at_stop",
           "derive_seed", "generate", "keep_engines", "make_backend", "unload"]
