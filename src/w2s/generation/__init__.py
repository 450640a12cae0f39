"""Generation: one `generate(...)` over the `hf`, `vllm`, `openai` and `replay` backends, with
resumable JSONL output. See docs/architecture.md for the contract.

    from w2s.generation import SamplingConfig, generate
    gens = generate("path/to/model", [{"id": "q1", "prompt": "Question: ...\\nAnswer:"}],
                    SamplingConfig(max_new_tokens=256, stop=("\\nQuestion:",)), out_path="g.jsonl")
"""

from w2s.generation.config import GenerationError, SamplingConfig, WorkItem, cut_at_stop, derive_seed
from w2s.generation.runner import BACKENDS, generate, make_backend


def unload() -> None:
    """Free the model cached by the `hf` backend (call before training on the same device)."""
    from w2s.generation.hf import unload as _unload

    _unload()


__all__ = ["BACKENDS", "GenerationError", "SamplingConfig", "WorkItem", "cut_at_stop",
           "derive_seed", "generate", "make_backend", "unload"]
