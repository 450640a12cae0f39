"""A task for any JSONL of question/answer rows, configured by options:

    get_task("custom", question_field="problem", answer_field="final",
             answer_regex=r"ANSWER: (.+)", equivalence="numeric" | "exact")

The answer regex finds the final answer in a model response (last match; group 1 if the
pattern has a group); it is also applied to the gold field when it matches there, so gold
can be either a bare answer or a full solution. Numeric equivalence is GSM8K's exact
numbers (text comparison when not numbers); exact is whitespace-normalised string equality.
"""

from __future__ import annotations

import re

from w2s.grading import last_match, normalize_text, numbers_equal
from w2s.tasks.base import Task, register_task

DEFAULT_ANSWER_REGEX = r"(?:####|[Tt]he (?:final )?answer is:?)[ \t]*([^\n]+)"
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"


@register_task
class CustomTask(Task):
    name = "custom"

    def __init__(self, question_field: str = "question", answer_field: str = "answer",
                 solution_field: str | None = None, id_field: str = "id",
                 answer_regex: str = DEFAULT_ANSWER_REGEX, equivalence: str = "numeric",
                 prompt_template: str = DEFAULT_TEMPLATE, stop: tuple[str, ...] | list[str] = ("\nQuestion:",)):
        if equivalence not in ("numeric", "exact"):
            raise ValueError(f"equivalence must be 'numeric' or 'exact', got {equivalence!r}")
        if "{question}" not in prompt_template:
            raise ValueError("prompt_template must contain '{question}'")
        try:
            self.answer_pattern = re.compile(answer_regex)
        except re.error as e:
            raise ValueError(f"invalid answer_regex {answer_regex!r}: {e}") from None
        self.question_field, self.answer_field = question_field, answer_field
        self.solution_field, self.id_field = solution_field, id_field
        self.equivalence, self.prompt_template = equivalence, prompt_template
        self.stop = tuple(stop)
        self.rename = {k: v for k, v in ((question_field, "question"), (id_field, "id")) if k != v}

    def prompt(self, question: str) -> str:
        return self.prompt_template.replace("{question}", question)

    def _find(self, text: str) -> str | None:
        m = last_match(self.answer_pattern, text or "")
        if m is None:
            return None
        found = m.group(1) if self.answer_pattern.groups else m.group(0)
        return (found or "").strip().rstrip(".").strip()

    def find_answer(self, text: str) -> str:
        return self._find(self.clean_response(text)) or ""

    def gold_answer(self, row: dict) -> str:
        value = row[self.answer_field]
        if value is None:
            raise KeyError(self.answer_field)
        text = str(value)
        return self._find(text) or text.strip()

    def gold_solution(self, row: dict) -> str | None:
        if self.solution_field:
            return row.get(self.solution_field)
        return None

    def equivalent(self, a: str, b: str) -> bool:
        if self.equivalence == "numeric":
            return numbers_equal(a, b)
        na, nb = normalize_text(a or ""), normalize_text(b or "")
        return bool(na) and na == nb
