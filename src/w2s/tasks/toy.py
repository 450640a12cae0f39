"""The `toy` task: the toy world's multi-step word problems (see docs/toy_world.md).

Same interface and format as gsm8k — prompt `Question: {q}\\nAnswer:`, solutions ending in
`#### N`, integer answers — with a LENIENT answer extraction fallback: a base model prompted
few-shot may finish with the final markers of its pretraining corpus (`Result: 27`,
`=> 27`, `So the result is 27.`) instead of `#### 27`. `completion()` rewrites such a
response into the task format so that it can be used as training data.

Extraction order: (1) `#### N`; (2) a known final marker (last one wins);
(3) the last integer of the response (lenient only). `ToyTask(lenient=False)` stops at (1).
Text is read through `w2s.grading.canonical_text` (the Unicode rule of every task). Unlike
gsm8k, `#### N` here is the number right after the marker even when the line goes on: the toy
models often write `##### 65 - 32 = 35.`-style lines, and a stricter rule would change the
published toy numbers (19 answers, 8 verdicts of a `demo --quick` run).
"""

from __future__ import annotations

import re

from w2s.grading import canonical_text, last_match
from w2s.tasks.base import Task, register_task

_NUM = r"[-+]?\d[\d,]*(?:\.\d+)?"
_HASH = re.compile(r"####\s*(" + _NUM + ")")
# Final markers of the pretraining corpus and common natural-language ones. Group 1 = number.
# The lookahead names every alternative's first character so that the regex engine skips other
# positions fast (10x on a megabyte response); it matches nothing the alternatives would not.
_MARKERS = re.compile(
    r"(?=[fartel=i])(?:\b(?:final answer|answer|result|final|total)\s*(?:is|:|=)\s*|=>\s*|\bends? (?:up )?with\s+"
    r"|\bleaves \w+ with\s+|\bin the end, \w+ ha(?:s|ve)\s+)(" + _NUM + ")",
    re.IGNORECASE)
_LAST_NUM = re.compile(_NUM)
_PLAIN = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_TRAILING_WORDS = re.compile(r"(?:\b(?:so|the|and|thus|then)\b[ ,]*)+$", re.IGNORECASE)


def normalize_number(text: str) -> str:
    """'1,234' -> '1234', '+5' -> '5', '27.0' -> '27', '3.5' -> '3.5'; '' if not a number."""
    t = canonical_text(text).strip().rstrip(".").lstrip("+")
    if not _PLAIN.fullmatch(t):
        return ""  # "25,30" is two numbers; float() would also take "1e3", "1_000", "nan"
    t = t.replace(",", "")
    try:
        x = float(t)
    except ValueError:
        return ""
    if x != x or x in (float("inf"), float("-inf")):
        return ""
    return str(int(x)) if x == int(x) else repr(x)


@register_task
class ToyTask(Task):
    name = "toy"
    stop = ("\nQuestion:", "\n\n")

    def __init__(self, lenient: bool = True, rewrite_markers: bool = True):
        self.lenient = lenient
        #: `completion()` rewrites a corpus final marker into `#### N` (world v10, whose strong base
        #: ignores the demonstrated marker); False keeps a response as written (v11)
        self.rewrite_markers = rewrite_markers

    def strict(self) -> "ToyTask | None":
        return ToyTask(lenient=False, rewrite_markers=self.rewrite_markers) if self.lenient else None

    # ---- answers ------------------------------------------------------------
    def clean_response(self, response: str) -> str:
        """Cut run-on text: at a stop string, and right after the `#### N` line."""
        text = super().clean_response(response)
        m = _HASH.search(text)
        if m:
            text = text[:m.end()]
        return text

    def _find(self, text: str) -> tuple[str, int | None]:
        """(answer, start of the final-answer statement or None when the answer is `#### N`
        or the bare last number)."""
        m = _HASH.search(text)
        if m:
            return normalize_number(m.group(1)), None
        if not self.lenient:
            return "", None
        m = last_match(_MARKERS, text)
        if m:
            return normalize_number(m.group(1)), m.start()
        m = last_match(_LAST_NUM, text)
        return (normalize_number(m.group(0)) if m else ""), None

    def find_answer(self, text: str) -> str:
        return self._find(self.clean_response(text))[0]

    def completion(self, response: str) -> str:
        """Training completion in the task format: ` {steps}\\n#### N`. A response that ends
        with another final marker (lenient parse) is rewritten: the sentence holding the
        marker is dropped and `\\n#### N` appended. Responses without any answer are only
        cleaned; with `rewrite_markers=False` every response is only cleaned."""
        text = self.clean_response(response).strip()
        if _HASH.search(text) or not self.rewrite_markers:
            return " " + text
        ans, start = self._find(text)
        if not ans:
            return " " + text
        body = text
        if start is not None:
            # Drop the final-answer statement: from the start of its sentence/line.
            cut = max(text.rfind(". ", 0, start) + 1, text.rfind("\n", 0, start))
            body = text[:cut] if cut > 0 else _TRAILING_WORDS.sub("", text[:start])
        body = body.rstrip()
        return (" " + body + "\n" if body else " ") + f"#### {ans}"

    def gold_answer(self, row: dict) -> str:
        ans = row.get("answer")
        if ans is None:
            raise KeyError("answer")
        ans = str(ans)
        m = _HASH.search(ans)
        return normalize_number(m.group(1) if m else ans)

    def gold_solution(self, row: dict) -> str | None:
        sol = row.get("solution")
        if sol:
            return sol
        ans = row.get("answer")
        return ans if isinstance(ans, str) and "####" in ans else None

    def equivalent(self, a: str, b: str) -> bool:
        x, y = normalize_number(str(a)), normalize_number(str(b))
        return bool(x) and x == y
