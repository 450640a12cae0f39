"""Strategies from outside w2s, named in a run config as "module:object" (tests/test_plugins.py).

`first_half` is a plain function (it declares nothing and gets nothing beyond the columns);
`icl_over_weak` is an `Entry` that declares the input it needs (the strong model's in-context
answers), which the pipeline then provides. An Entry declares without registering a global
name; `PAIRS.register(...)` works too, for a name the whole process shares."""

from __future__ import annotations

from w2s.registry import Entry
from w2s.method.selection import first_generation, select_consistent
from w2s.method.voting import usable_answer


def first_half(task, questions, weak_gens, icl_gens):
    """The paper's consistency rule on the first half of the questions (in file order) only."""
    return select_consistent(task, list(questions)[: len(questions) // 2], weak_gens, icl_gens)


def icl_over_weak_pairs(task, questions, weak_gens, samples, *, icl_gens, seed, max_pairs, **unused):
    """Chosen = the in-context strong answer, rejected = the weak one, where both are usable and
    their final answers differ (no vote at all)."""
    weak, icl = first_generation(weak_gens), first_generation(icl_gens)
    out = []
    for q in questions:
        qid = str(q["id"])
        a, b = usable_answer(task, icl.get(qid)), usable_answer(task, weak.get(qid))
        if a and b and not task.equivalent(a, b):
            out.append({"id": qid, "prompt": task.prompt(q["question"]),
                        "chosen": task.completion(icl[qid]["response"]),
                        "rejected": task.completion(weak[qid]["response"]), "weak_side": "rejected",
                        "chosen_answer": a, "rejected_answer": b})
    return out


icl_over_weak = Entry("w2s_plugins_example:icl_over_weak", icl_over_weak_pairs, needs=("icl_gens",))
