"""The task's gold solutions (the chain of thought in the task format, ending in `#### N`) and the
pieces the pretraining corpus shares with them: restated sentences, equation forms, the plans of
worlds v21-v29. Which version draws what is decided here from the version's name
(`forms_rng`, `leave_out_rng`, `plan_of`); the problems themselves come from `w2s.toy.world`.
"""

from __future__ import annotations

import random

from w2s.toy.problem import Problem

#: versions whose gold solutions leave out each distractor with probability 1/2 (else `: skip.`)
LEAVE_OUT_DISTRACTORS = ("v20",)
#: v21: the plans a gold solution follows (one drawn per problem), `solution_text`; v22's corpus
#: draws them per solved problem too
PLANS = ("restate", "equations", "story")
PLAN_VERSIONS = ("v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29")

SYMBOL = {"add": "+", "sub": "-", "double": "*", "triple": "*", "half": "/"}


def equation_operands(op: str, k: int | None) -> int:
    return {"double": 2, "triple": 3, "half": 2}.get(op, k)


SKIP = "skip"


def restated_steps(p: Problem, render_equation, sep: str = ": ", skip: str = SKIP,
                   keep_distractors: bool = True, leave_out: random.Random | None = None) -> list[str]:
    """Every question sentence in order, each operation followed by `sep` and its equation
    (`render_equation(op, a, b, result)`), each distractor by `sep` and `skip`, or left out: always
    without `keep_distractors`, with probability 1/2 under a `leave_out` generator (v20). Shared by
    the task's solutions and the corpus's restating formats."""
    ops, parts = list(chain(p)), []
    for text, i in p.sentences:
        if i is None:
            if keep_distractors and not (leave_out is not None and leave_out.random() < 0.5):
                parts.append(f"{text[:-1]}{sep}{skip}.")
        elif i == 0:
            parts.append(text)
        else:
            parts.append(f"{text[:-1]}{sep}{render_equation(*ops[i - 1])}.")
    return parts


def equation_form(rng: random.Random | None, op: str, a: int, b: int) -> tuple[int, str, int]:
    """(left, symbol, right) of an operation's equation on value `a` with operand `b`. Without a
    generator (v10) the one form `a op b`; with one (v11) a form drawn among the valid ones."""
    if rng is None:
        return a, SYMBOL[op], b
    if op == "add":
        return (a, "+", b) if rng.random() < 0.5 else (b, "+", a)
    if op == "double":
        return rng.choice([(a, "*", 2), (2, "*", a), (a, "+", a)])
    if op == "triple":
        return rng.choice([(a, "*", 3), (3, "*", a)])
    return a, SYMBOL[op], b


def forms_rng(version: str, key: str) -> random.Random | None:
    """The generator of a solution's equation forms: None in v10 (one form), else seeded by `key`
    and apart from the question's generator (so questions are the same in every version)."""
    return None if version == "v10" else random.Random(f"toy-forms:{key}")


def leave_out_rng(version: str, key: str) -> random.Random | None:
    """The generator that leaves distractors out of a gold solution (v20), apart from the
    question's and the equation forms' (so both are v19's); None in every other version."""
    return random.Random(f"toy-omit:{key}") if version in LEAVE_OUT_DISTRACTORS else None


def plan_of(version: str, key: str) -> str:
    """The plan of a gold solution: "restate" in every version but those of `PLAN_VERSIONS`, which
    draw one of `PLANS` per problem from a generator of its own (so questions and equation forms are v19's)."""
    return random.Random(f"toy-plan:{key}").choice(PLANS) if version in PLAN_VERSIONS else "restate"


def solution_text(p: Problem, forms: random.Random | None = None, leave_out: random.Random | None = None,
                  plan: str = "restate") -> str:
    """Chain of thought in the task format, ending in `#### N`: every question sentence is
    restated in order (a local copy, which small transformers do by induction) and followed by
    its equation, or by `: skip.` for a distractor:

        Mia has 12 apples. Leo has 30 apples: skip. She buys 5 more apples: 12 + 5 = 17.
        She doubles her apples: 17 * 2 = 34.
        #### 34

    `forms` (v11) draws each equation's form: `She buys 5 more apples: 5 + 12 = 17.`; `leave_out`
    (v20) passes over half the distractors: `Mia has 12 apples. She buys 5 more apples: ...`.
    `plan` (v21): "equations" writes the chain alone (`Start: 12. 12 + 5 = 17. 17 * 2 = 34.`),
    "story" tells every sentence, a distractor as written and an operation with its running
    total (`She buys 5 more apples, so now she has 12 + 5 = 17.`)."""
    def render(op, a, b, r):
        x, sym, y = equation_form(forms, op, a, b)
        return f"{x} {sym} {y} = {r}"

    if plan == "restate":
        parts = restated_steps(p, render, leave_out=leave_out)
    elif plan == "equations":
        parts = [f"Start: {p.values[0]}."] + [f"{render(op, a, b, r)}." for op, a, b, r in chain(p)]
    elif plan == "story":
        parts = story_steps(p, render)
    else:
        raise ValueError(f"unknown solution plan {plan!r}; known: {', '.join(PLANS)}")
    return " ".join(parts) + f"\n#### {p.answer}"


def solution_plan(text: str) -> str:
    """Which of `PLANS` a solution (or a model's response) follows: a chain that opens with `Start:`,
    a story (`..., so now she has ...`), or restated sentences (everything else)."""
    text = text.lstrip()
    return "equations" if text.startswith("Start:") else "story" if ", so now " in text else "restate"


def chain(p: Problem):
    """(op, value before, operand as written, value after) of each operation, in order."""
    for step, a, r in zip(p.steps[1:], p.values, p.values[1:]):
        yield step[0], a, equation_operands(step[0], step[1] if len(step) > 1 else None), r


def story_steps(p: Problem, render_equation) -> list[str]:
    """Every question sentence told in order, a distractor (and the start) as written, an operation
    with the running total: `She buys 5 more apples, so now she has 12 + 5 = 17.` (v21's story plan,
    v22's corpus)."""
    ops = list(chain(p))
    return [text if not i else f"{text[:-1]}, so now {p.pronoun} has {render_equation(*ops[i - 1])}."
            for text, i in p.sentences]
