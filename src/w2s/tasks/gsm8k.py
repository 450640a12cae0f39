"""GSM8K: grade-school word problems with a single numeric answer.

Format (the paper's zero-shot format, also the weak model's training format):
    prompt      "Question: {question}\nAnswer:"
    completion  " {chain of thought}\n#### {number}"
Gold solutions in the GSM8K files carry calculator annotations ("48/2 = <<48/2=24>>24");
`gold_solution` strips them, because the models are trained and prompted without them (the
shipped weak-model outputs contain none).
"""

from __future__ import annotations

import re

from w2s.grading import last_nonempty, numbers_equal
from w2s.tasks.base import Task, register_task

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_THE_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is[:\s]*([^\n]*)")
#: An extracted answer longer than this is a degenerate loop, not an answer.
MAX_ANSWER_CHARS = 200


def strip_calculator_annotations(text: str) -> str:
    return _CALCULATOR.sub("", text)


def _final_after_hashes(text: str) -> str | None:
    """The text after the last non-empty '####' line, or None."""
    return last_nonempty(_HASHES, text)


@register_task
class GSM8KTask(Task):
    name = "gsm8k"
    stop = ("\nQuestion:",)

    def clean_response(self, response: str) -> str:
        """Cut where the model runs on into a new question (also mid-line)."""
        response = response or ""
        cut = response.find("Question:")
        return response if cut == -1 else response[:cut]

    def find_answer(self, text: str) -> str:
        """The last '#### ...' line of the cleaned response, else 'The answer is ...'; "".
        The whole line is the answer: a hedged one ("25 or 30") is not a number when graded."""
        text = self.clean_response(text)
        answer = _final_after_hashes(text)
        if answer is None:
            answer = last_nonempty(_THE_ANSWER_IS, text) or ""
        answer = answer.strip().rstrip(".").strip()
        return answer if len(answer) <= MAX_ANSWER_CHARS else ""

    def gold_answer(self, row: dict) -> str:
        """'#### N' in `answer` (train files) or `solution`, else `answer` / `gold` as is."""
        for field in ("answer", "solution"):
            value = row.get(field)
            if isinstance(value, str) and "####" in value:
                final = _final_after_hashes(value)
                if final:
                    return final
        for field in ("answer", "gold"):
            value = row.get(field)
            if value is not None and str(value).strip():
                return str(value).strip()
        raise KeyError("answer")

    def gold_solution(self, row: dict) -> str | None:
        """The gold chain of thought (ending '#### N'), calculator annotations stripped."""
        for field in ("solution", "answer"):
            value = row.get(field)
            if isinstance(value, str) and "####" in value:
                return strip_calculator_annotations(value).strip()
        return None

    def equivalent(self, a: str, b: str) -> bool:
        return numbers_equal(a, b)
