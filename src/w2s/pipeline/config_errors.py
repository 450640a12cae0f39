"""Config errors in one line that names the dotted key: pydantic's errors, translated."""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A configuration problem; the message names the key (dotted path) or the file."""


_TYPES = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
          "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
          "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping",
          "list_type": "a list", "model_type": "a mapping", "model_attributes_type": "a mapping"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def translate(error: ValidationError, model: type[BaseModel]) -> str:
    """The first error of `error` as "key.path: what is wrong, got VALUE"."""
    e = _first(error)
    loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "constrained-"))]
    key = _dotted(_key_path(loc)) or "config"
    kind, value = e["type"], e.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        near = difflib.get_close_matches(loc[-1], known, n=1)
        return (f"{key}: unknown key (known: {', '.join(known)})"
                + (f"; did you mean {_dotted(_key_path(loc[:-1]) + [near[0]])!r}?" if near else ""))
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in _TYPES:
        return f"{key}: expected {_TYPES[kind]}, got {type(value).__name__} {_short(value)}"
    if kind == "finite_number":
        return f"{key}: must be a finite number, got {_short(value)}"
    if kind == "literal_error":
        return f"{key}: expected one of {e['ctx']['expected']}, got {_short(value)}"
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        why = _why(model, loc)
        return f"{key}: must be {op} {e['ctx'][name]}{f' ({why})' if why else ''}, got {_short(value)}"
    if kind in ("value_error", "assertion_error"):
        msg = str(e["msg"]).removeprefix("Value error, ")
        return f"{key}{msg}" if msg.startswith(".") else f"{key}: {msg}"  # ".sub: ..." names a sub-key
    return f"{key}: {e['msg']}, got {_short(value)}"


def _first(error: ValidationError) -> dict:
    """Union members each report an error; the one that is not `null`'s is the useful one."""
    errors = error.errors()
    useful = [e for e in errors if e["type"] not in ("none_required",)]
    return (useful or errors)[0]


def _key_path(loc: list[str]) -> list[str]:
    # union branches appear in loc as type names (`str`, `dict[any,any]`): not part of the key
    return [p for p in loc if not (p in ("str", "int", "float", "bool", "list", "dict") or "[" in p)]


def _dotted(parts: list[str]) -> str:
    """["stage1", "variants", "1"] -> "stage1.variants[1]"."""
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_at(model: type[BaseModel], loc: list[str]):
    current: typing.Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current


def _unwrap(tp):
    for arg in typing.get_args(tp) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return tp


def _known_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    owner = _model_at(model, loc)
    return list(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else []


def _why(model: type[BaseModel], loc: list[str]) -> str | None:
    owner = _model_at(model, loc[:-1])
    if not (isinstance(owner, type) and issubclass(owner, BaseModel)) or loc[-1] not in owner.model_fields:
        return None
    extra = owner.model_fields[loc[-1]].json_schema_extra
    return extra.get("why") if isinstance(extra, dict) else None
