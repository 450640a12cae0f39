"""Strategies as plug-ins: each is one plain function registered under a name that a config key
selects (`stage1.selection`, `stage2.pairs`, `stage3.reward`). A researcher adds one by writing
the function and decorating it:

    from w2s.method.registry import SELECTION, register

    @register(SELECTION, "my_rule")
    def my_rule(task, questions, weak_gens, icl_gens, **context): ...

The function's docstring is its documentation ("what it is and where it comes from"); `describe`
prints it, and docs/toy_world.md tabulates the registered ones on real toy generations.
"""

from __future__ import annotations

from typing import Callable

SELECTION: dict[str, Callable] = {}   # Stage I: which train_2 questions (and solutions) the strong model learns
PAIRS: dict[str, Callable] = {}       # Stage II: preference pairs from votes and the weak answers
REWARDS: dict[str, Callable] = {}     # Stage III: pseudo-label rule + reward for label-free RL


def register(registry: dict[str, Callable], name: str):
    """Decorator: add `fn` to `registry` under `name` (a duplicate name is an error, not a silent swap)."""
    def deco(fn: Callable) -> Callable:
        if name in registry:
            raise ValueError(f"strategy {name!r} is already registered ({registry[name].__module__})")
        registry[name] = fn
        return fn
    return deco


def lookup(registry: dict[str, Callable], name: str, key: str) -> Callable:
    """The strategy `name`, or an error naming the config key and the known names."""
    if name not in registry:
        raise ValueError(f"{key}: unknown strategy {name!r} (known: {', '.join(sorted(registry))})")
    return registry[name]


def describe(registry: dict[str, Callable]) -> dict[str, str]:
    """{name: first paragraph of its docstring}."""
    return {name: (fn.__doc__ or "").strip().split("\n\n")[0] for name, fn in sorted(registry.items())}
