"""The method's plug-ins: each is one plain function registered under a name that a config key
selects (`stage1.selection`, `stage2.pairs`, `stage3.reward`; a reward names its pseudo-label
rule). A researcher adds one by writing the function and decorating it:

    from w2s.method.registry import SELECTION

    @SELECTION.register("my_rule", needs=("icl_samples",), params=("confidence_threshold",))
    def my_rule(task, questions, weak_gens, icl_gens, *, icl_samples, confidence_threshold): ...

`params` are keys of the entry's config section (stage1 / stage2 / stage3) whose values it gets;
`needs` are named inputs the pipeline (or the CLI) provides: `seed` (the run's seed),
`icl_gens` (the strong model's in-context answers, D_icl), `icl_samples` (its k in-context
samples: the pipeline adds the stage that makes them only when an entry needs them), `iteration`
(Stage I's iteration), `d_weak` / `d_icl` (iteration 1's columns, at every iteration),
`hidden_gold` (controls only; `INPUTS` says what each is). A config
may also name "package.module:function" from outside w2s. The function's docstring is its
documentation: `describe()` prints it.
"""

from __future__ import annotations

from w2s.registry import Entry, Registry

SELECTION = Registry("selection rule", key="stage1.selection")  # Stage I: which train_2 questions are learnt
PAIRS = Registry("pair rule", key="stage2.pairs")                # Stage II: preference pairs
REWARDS = Registry("reward", key="stage3.reward")                # Stage III: label-free RL reward
LABEL_RULES = Registry("pseudo-label rule")                      # Stage III: a reward's labels

#: the inputs an entry may name in `needs`, and what each is
INPUTS = {"seed": "the run's seed", "icl_gens": "the strong model's in-context answers (D_icl)",
          "icl_samples": "the strong model's k in-context samples per question (stage1.confidence_samples)",
          "iteration": "the Stage I iteration (1, 2, ...) the selection is for",
          "d_weak": "the weak model's original answers (D_weak), at every iteration",
          "d_icl": "the base strong model's original in-context answers (D_icl), at every iteration",
          "hidden_gold": "the gold answers of the unlabeled questions: CONTROLS only (w2s.method.controls); "
                         "a run with an entry that needs them is not label-free and its report says so"}


def register(registry: Registry, name: str, **meta):
    """`@register(SELECTION, "name")`: the same as `@SELECTION.register("name")`."""
    return registry.register(name, **meta)


def describe(registry: Registry) -> dict[str, str]:
    """{name: first paragraph of its docstring}."""
    return registry.describe()


def chosen(entry: Entry, values: dict) -> dict:
    """The values an entry reads (its params and needs) out of everything available, by name;
    a missing one is an error naming it."""
    missing = [n for n in (*entry.params, *entry.needs) if n not in values]
    if missing:
        raise ValueError(f"{entry.name!r} needs {', '.join(missing)}, which were not provided")
    return {n: values[n] for n in (*entry.params, *entry.needs)}
