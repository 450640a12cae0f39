"""Shared fixtures: real data from ../shared/data (skipped with a clear reason when absent)
and tiny locally built models (no hub access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (CI and developer machines have ../shared/data)")
    return SHARED_DATA


def _gsm8k_texts(limit: int = 1500) -> list[str]:
    path = SHARED_DATA / "gsm8k" / "train_1.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.open()][:limit]
        return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    # Fallback corpus so the tiny model can still be built without ../shared.
    return [f"Question: What is {a} plus {b}?\nAnswer: {a} + {b} = {a + b}\n#### {a + b}"
            for a in range(40) for b in range(40)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer random-init Llama with a 512-token BPE tokenizer trained on GSM8K text."""
    from w2s.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), _gsm8k_texts(), seed=0)


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory) -> Path:
    """A second, larger tiny model (a 'strong' model) sharing nothing with the first."""
    from w2s.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model_b"), _gsm8k_texts(), hidden_size=96,
                            num_layers=3, seed=1)


#: Python that makes a child print its own peak RSS at exit (`PEAK_RSS_KB n` on stderr): VmHWM, not
#: ru_maxrss, which exec carries over from the parent (an xdist worker that has loaded vLLM: ~1.1 GB)
PEAK_RSS_PROBE = ("import atexit, re, sys; atexit.register(lambda: print('PEAK_RSS_KB', re.search("
                  "r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), file=sys.stderr))\n")


@pytest.fixture(scope="session")
def peak_rss_probe() -> str:
    return PEAK_RSS_PROBE


def pytest_collection_modifyitems(config, items):
    """Slow (end-to-end) tests first: pyproject runs the suite on two xdist workers (`-n 2 --dist
    load`), which deal the first tests out in turn, so each worker starts on a long one instead of
    the last minutes running them one after another on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
