"""A toy problem: one person's stock of one kind of object, a start value and its operations (the
step list), told as question sentences. `w2s.toy.world` draws problems, `w2s.toy.solutions` writes
their gold solutions, `w2s.toy.corpus` the pretraining documents."""

from __future__ import annotations

from dataclasses import dataclass, field


def steps_key(steps) -> tuple:
    return tuple(tuple(s) for s in steps)


@dataclass
class Problem:
    name: str
    pronoun: str
    obj: str
    steps: list[list]                 # [["start", v], ["add", k], ["double"], ...]
    values: list[int]                 # value after each step (values[0] = start)
    sentences: list[tuple[str, int | None]] = field(default_factory=list)  # (text, step index or None)
    final: str = ""

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def question(self) -> str:
        return " ".join([s for s, _ in self.sentences] + [self.final])

    def signature(self) -> tuple:
        """The computation (step list): two problems that differ only in names are the same."""
        return steps_key(self.steps)
