"""The Task interface: a task owns its prompt format, answer extraction and grading.

Adding a task = one file in `w2s/tasks/` that subclasses `Task` and is decorated with
`@register_task`, plus an import line in `w2s/tasks/__init__.py`. Tasks are entries of
`TASKS`, a `w2s.registry.Registry`: a run config's `task:` may also name a Task subclass
outside w2s as "package.module:Class".
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

from w2s.grading import GradingBudget, canonical_text
from w2s.io import DataError, read_records
from w2s.registry import Registry

TASKS = Registry("task", key="task")


class Task(ABC):
    name: str = ""
    #: Generation stops at any of these (models "run on" into the next question).
    stop: tuple[str, ...] = ("\nQuestion:",)
    #: File field names -> record field names, applied by load_questions.
    rename: dict[str, str] = {}

    # ---- prompts ------------------------------------------------------------
    def prompt(self, question: str) -> str:
        """Zero-shot prompt (the paper's format)."""
        return f"Question: {question}\nAnswer:"

    def fewshot_prompt(self, demos: Sequence[tuple[str, str]], question: str) -> str:
        """Few-shot prompt: demonstrations are (question, solution) pairs."""
        parts = [f"{self.prompt(q)} {s.strip()}" for q, s in demos]
        parts.append(self.prompt(question))
        return "\n\n".join(parts)

    def completion(self, response: str) -> str:
        """Turn a raw model response into a training completion in this task's format
        (leading space after 'Answer:', run-on text cut)."""
        return " " + self.clean_response(response).strip()

    # ---- answers ------------------------------------------------------------
    def clean_response(self, response: str) -> str:
        """Cut a response where the model ran on into a new question."""
        cut = len(response)
        for s in self.stop:
            j = response.find(s)
            if j != -1:
                cut = min(cut, j)
        return response[:cut]

    def extract_answer(self, response: str) -> str:
        """The final answer in a model response, or "" if there is none: `find_answer` on
        `w2s.grading.canonical_text(response)` (one Unicode rule for every task), its time spent
        from this task's grading budget (past the budget, long responses are not read)."""
        return self.budget.extract(lambda text: self.find_answer(canonical_text(text)), str(response or ""))

    @abstractmethod
    def find_answer(self, text: str) -> str:
        """The final answer in a (canonical) response text, or "". Must be linear in the text
        length: responses are untrusted and may be megabytes of a degenerate loop."""

    @abstractmethod
    def gold_answer(self, row: dict) -> str:
        """The gold final answer of a data row."""

    def gold_solution(self, row: dict) -> str | None:
        """The gold chain-of-thought solution of a data row, if the row has one."""
        return row.get("solution")

    @abstractmethod
    def equivalent(self, a: str, b: str) -> bool:
        """Are two final answers the same? Must be symmetric; "" equals nothing."""

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`equivalent` over many pairs; a task whose check is expensive (math) overrides this
        to do them in one round-trip, and callers use it to warm that task's cache."""
        return [self.equivalent(a, b) for a, b in pairs]

    def matches(self, pred: str, gold: str) -> bool:
        """Is a predicted final answer right? An empty prediction never is."""
        return bool(pred) and self.equivalent(pred, gold)

    def is_correct(self, response: str, gold: str) -> bool:
        return self.matches(self.extract_answer(response), gold)

    def strict(self) -> "Task | None":
        """This task scoring only its own answer format, when its extraction is lenient
        (None: the task has one parser, so its accuracy is already strict). Reported accuracy is
        strict; the lenient one is reported beside it."""
        return None

    @property
    def budget(self) -> GradingBudget:
        """The grading budget of this task object (one per graded file): extraction and slow
        comparisons spend it. Assign a new one to start a new run."""
        budget = self.__dict__.get("_budget")
        if budget is None:
            budget = self._budget = GradingBudget()
        return budget

    @budget.setter
    def budget(self, value: GradingBudget) -> None:
        self._budget = value

    def grading_report(self) -> dict:
        """What bounded grading so far (extractions and comparisons that were slow, timed out or
        were skipped for budget), for summaries; empty when nothing was bounded."""
        budget = self.budget
        return budget.summary() if budget.slow or budget.skipped else {}

    # ---- data ---------------------------------------------------------------
    def load_questions(self, path: str, id_prefix: str | None = None) -> list[dict]:
        """Read a data file into question records {id, question, answer?, solution?}.

        Rows without an id get `{id_prefix or file stem}-{row index}`.
        """
        rows = read_records(path, rename=self.rename)
        stem = id_prefix or Path(str(path)).stem
        out = []
        for i, row in enumerate(rows, 1):
            if "question" not in row or not isinstance(row["question"], str):
                raise DataError(path, "missing question text", row=i, field="question")
            rec = {"id": row.get("id", f"{stem}-{i - 1}"), "question": row["question"]}
            try:
                gold = self.gold_answer(row)
            except (KeyError, ValueError):
                gold = None
            if gold is not None and gold != "":
                rec["answer"] = gold
            sol = self.gold_solution(row)
            if sol:
                rec["solution"] = sol
            out.append(rec)
        ids = [r["id"] for r in out]
        if len(set(ids)) != len(ids):
            seen, dup_row = set(), None
            for i, x in enumerate(ids, 1):
                if x in seen:
                    dup_row = i
                    break
                seen.add(x)
            raise DataError(path, f"duplicate id {ids[dup_row - 1]!r}", row=dup_row, field="id")
        return out


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register a Task subclass under its `name` (a taken name is an error)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    return TASKS.register(cls.name, cls)


def get_task(name: str, **options) -> Task:
    """Instantiate a registered task (or "package.module:Class"); options go to its constructor
    (e.g. custom fields)."""
    cls = TASKS.get(name).obj
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task: {name!r} is not a Task subclass (a {type(cls).__name__})")
    return cls(**options)


def make_task(spec: "str | dict | Task") -> Task:
    """The one way to build a task: a registered name, {"name": NAME, **options} (as in a run
    config's `task:`), or a Task (returned as is)."""
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, str):
        return get_task(spec)
    options = dict(spec)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"a task spec needs a 'name', got {spec!r}")
    try:
        return get_task(name, **options)
    except TypeError as e:
        raise ValueError(f"task {name!r} does not take these options: {e}") from None


def task_names() -> list[str]:
    return TASKS.names()


def seeded_rng(seed: int, *keys) -> random.Random:
    """A random generator that depends only on the seed and the keys (e.g. a question id),
    never on iteration order."""
    return random.Random(f"{seed}:" + ":".join(map(str, keys)))
