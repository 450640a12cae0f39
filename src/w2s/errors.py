"""One pydantic validation error as one sentence, in the words every w2s setting uses (the run
config's keys and the training settings alike): the rule and the value that broke it, or for an
unknown key the known ones and the nearest."""

from __future__ import annotations

import difflib
from typing import Sequence

TYPES = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
         "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
         "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping",
         "list_type": "a list", "tuple_type": "a list", "model_type": "a mapping",
         "model_attributes_type": "a mapping"}
BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(error: dict, *, known: Sequence[str] = (), aliases: Sequence[str] = (), why: str | None = None,
             suggest_prefix: str = "") -> str:
    """`error` (one of pydantic's `errors()`) as "what is wrong, got VALUE". `known` / `aliases`:
    the keys an unknown one is matched against (suggested as `suggest_prefix + name`); `why`:
    the reason a range has, shown beside it."""
    kind, value = error["type"], error.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(str(error["loc"][-1]), [*known, *aliases], n=1)
        return (f"unknown key (known: {', '.join(known)})"
                + (f"; did you mean {suggest_prefix + near[0]!r}?" if near else ""))
    if kind == "missing":
        return "required key is missing"
    if kind in TYPES:
        return f"expected {TYPES[kind]}, got {type(value).__name__} {short(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {short(value)}"
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected']}, got {short(value)}"
    if kind in BOUNDS:
        op, name = BOUNDS[kind]
        bound = error["ctx"][name]
        bound = int(bound) if isinstance(bound, (int, float)) and float(bound).is_integer() else bound
        return f"must be {op} {bound}{f' ({why})' if why else ''}, got {short(value)}"
    return f"{error['msg']}, got {short(value)}"
