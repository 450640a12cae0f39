"""Config errors in one line that names the dotted key: pydantic's errors, translated."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from w2s.errors import describe


class ConfigError(ValueError):
    """A configuration problem; the message names the key (dotted path) or the file."""


def translate(error: ValidationError, model: type[BaseModel]) -> str:
    """The first error of `error` as "key.path: what is wrong, got VALUE"."""
    e = _first(error)
    loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "constrained-"))]
    key = _dotted(_key_path(loc)) or "config"
    if e["type"] == "extra_forbidden":
        prefix = _dotted(_key_path(loc[:-1]))
        return f"{key}: " + describe(e, known=_known_keys(model, loc[:-1]), suggest_prefix=f"{prefix}." if prefix else "")
    if e["type"] in ("value_error", "assertion_error"):
        msg = describe(e)
        return f"{key}{msg}" if msg.startswith(".") else f"{key}: {msg}"  # ".sub: ..." names a sub-key
    return f"{key}: " + describe(e, why=_why(model, loc))


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
