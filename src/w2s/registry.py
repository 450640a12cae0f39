"""One registry for everything w2s looks up by name: tasks, generation backends, Stage I
selection rules, Stage II pair rules, Stage III rewards.

    SELECTION = Registry("selection rule", key="stage1.selection")

    @SELECTION.register("weak_answered", needs=("icl_samples",), params=("confidence_threshold",))
    def weak_answered(task, questions, weak_gens, icl_gens, **inputs): ...

An entry declares what it reads: `params` are keys of its config section (their values join the
stage's cache key and are passed as keyword arguments), `needs` are named inputs the pipeline
provides (files other stages make, e.g. `icl_samples`). So neither the pipeline nor the CLI
ever compares a strategy's name.

A config may also name an entry from outside w2s as "package.module:object": the module is
imported (running its `register` decorators, if any) and the object is used; a plain function
becomes an entry with no params and no needs unless its module registered it.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    params: tuple[str, ...] = ()   # config keys of the entry's section that it reads
    needs: tuple[str, ...] = ()    # named inputs the caller must provide

    @property
    def doc(self) -> str:
        """The first paragraph of the object's docstring: what it is and where it comes from."""
        return (getattr(self.obj, "__doc__", None) or "").strip().split("\n\n")[0]

    def __call__(self, *args, **kwargs):
        return self.obj(*args, **kwargs)


class Registry:
    """Named entries of one kind. A duplicate name is an error, never a silent swap."""

    def __init__(self, kind: str, key: str | None = None):
        self.kind = kind          # "selection rule", "task", ...: used in error messages
        self.key = key            # the config key that names an entry, when there is one
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any = None, *, params: tuple[str, ...] = (),
                 needs: tuple[str, ...] = ()):
        """`@REG.register("name", ...)` over a function or class, or `REG.register("name", obj)`."""
        def add(target):
            if name in self._entries and self._entries[name].obj is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered "
                                 f"({getattr(self._entries[name].obj, '__module__', '?')})")
            self._entries[name] = Entry(name, target, tuple(params), tuple(needs))
            return target
        return add if obj is None else add(obj)

    def get(self, name: str, key: str | None = None) -> Entry:
        """The entry `name` (or "package.module:object"), else a ValueError naming the config key,
        the known names and the nearest one."""
        key = key or self.key or self.kind
        if not isinstance(name, str):
            raise ValueError(f"{key}: expected a name, got {type(name).__name__} {name!r}")
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return self._import(name, key)
        near = difflib.get_close_matches(name, list(self._entries), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"{key}: unknown {self.kind} {name!r} (known: {', '.join(self.names())}; "
                         f"or 'package.module:object'){hint}")

    def _import(self, spec: str, key: str) -> Entry:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"{key}: cannot import {module_name!r} for {spec!r} ({e})") from None
        obj = getattr(module, attr, None)
        if obj is None:
            raise ValueError(f"{key}: module {module_name!r} has no {attr!r}")
        if isinstance(obj, Entry):
            return obj
        registered = next((e for e in self._entries.values() if e.obj is obj), None)
        if registered is not None:
            return registered
        if not callable(obj):
            raise ValueError(f"{key}: {spec!r} is not callable")
        entry = Entry(spec, obj)
        self._entries[spec] = entry
        return entry

    def remove(self, name: str) -> None:
        """Drop an entry (tests, notebooks re-running a cell)."""
        self._entries.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def names(self) -> list[str]:
        return sorted(n for n in self._entries if ":" not in n)

    def describe(self) -> dict[str, str]:
        """{name: first paragraph of its docstring}, built-in and registered entries."""
        return {e.name: e.doc for e in self.entries()}


def call(entry: Entry, *args, inputs: dict[str, Any] | None = None, section: Any = None,
         **kwargs) -> Any:
    """Call an entry with the config values it declared (read from `section`, an object or a
    mapping) and the named inputs it needs (missing ones are an error naming them)."""
    inputs = inputs or {}
    missing = [n for n in entry.needs if n not in inputs]
    if missing:
        raise ValueError(f"{entry.name!r} needs {', '.join(missing)}, which the caller did not provide")
    params = {p: (section[p] if isinstance(section, dict) else getattr(section, p)) for p in entry.params}
    return entry(*args, **kwargs, **params, **{n: inputs[n] for n in entry.needs})

