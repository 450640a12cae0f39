"""GSM8K-style numeric answers: `parse_number` (exact `Fraction`s, length-capped, pure Python;
no sympy, no worker, microseconds per call) and `numbers_equal`. An answer is ONE number:
"25 or 30", "25*2", "25^{99}", "25!" are not 25 (they are compared as text)."""

from __future__ import annotations

import re
from fractions import Fraction

from w2s.grading.text import canonical_text, normalize_text

#: Longest answer text the numeric parser looks at; longer text is never a number.
MAX_NUMBER_TEXT = 200
#: Longest digit run accepted (a 10,000-digit "number" is a degenerate loop, not an answer).
MAX_DIGITS = 100

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CLOCK_OR_RATIO = re.compile(r"\d\s*:\s*\d")
#: Words that make "25 <word>" something other than 25 units ("25 or 30", "25 squared").
_NOT_UNITS = frozenset("or and to plus minus times divided over by squared cubed less more than "
                       "x e".split())
# The whole answer: [sign] [currency] [sign] number [%] [up to three unit words] [.]
_NUMBER = re.compile(
    r"(?P<sign>[-+]?)[ \t]*(?:[€£¥][ \t]*)?(?P<sign2>[-+]?)[ \t]*"  # $ is removed before
    r"(?:(?P<whole>[0-9]+)[ \t]+(?P<num>[0-9]+)[ \t]*/[ \t]*(?P<den>[0-9]+)"  # mixed number 2 1/2
    r"|(?P<a>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[ \t]*/[ \t]*(?P<b>[0-9]+(?:\.[0-9]+)?))?)"  # 4.20, .5, 3/4
    r"[ \t]*%?(?P<units>(?:[ \t]+[A-Za-z]+){0,3})[ \t]*\.?"
)


def parse_number(text: str) -> Fraction | None:
    """The number an answer states, exactly, or None when the answer is not ONE number.

    Currency signs, thousands separators, %, a trailing period and up to three unit words
    ("18 dollars", "3 square feet") are allowed; for "x = b" forms the right-hand side counts
    when the left has no digits. Anything else (a second number, an operator or symbol after
    the number: "25 or 30", "25*2", "25^{99}", "25!", "25 (approx)") is not a number, and
    is then compared as text, as the paper's string grader would.
    """
    if not isinstance(text, str):
        return None
    s = canonical_text(text).strip()
    if not s or len(s) > MAX_NUMBER_TEXT:
        return None
    s = (s.replace("\\$", "").replace("$", "").replace("\\%", "%")
         .replace("\\!", "").replace("{,}", ","))
    if "=" in s:
        lhs, s = s.rsplit("=", 1)
        if any(c.isdigit() for c in lhs):
            return None  # "48/2 = 24": several numbers
    s = _THOUSANDS.sub("", s.strip())
    if _CLOCK_OR_RATIO.search(s):
        return None  # "5:30" is a time (or a ratio), not 5: compare as text
    m = _NUMBER.fullmatch(s)
    if not m or (m.group("sign") and m.group("sign2")):
        return None
    if any(w.lower() in _NOT_UNITS for w in m.group("units").split()):
        return None
    if sum(c.isdigit() for c in m.group(0)) > MAX_DIGITS:
        return None
    sign = -1 if "-" in (m.group("sign"), m.group("sign2")) else 1
    try:
        if m.group("whole") is not None:
            den = int(m.group("den"))
            if den == 0:
                return None
            value = int(m.group("whole")) + Fraction(int(m.group("num")), den)
        else:
            value = Fraction(m.group("a"))
            if m.group("b") is not None:
                den = Fraction(m.group("b"))
                if den == 0:
                    return None
                value /= den
    except (ValueError, ZeroDivisionError):
        return None
    return sign * value


def numbers_equal(a: str, b: str) -> bool:
    """Numeric equivalence for GSM8K-style answers (exact: 4.20 == 4.2, 3/4 == 0.75).

    Falls back to normalised string equality when either side is not a number, which keeps
    the relation symmetric. "" equals nothing.
    """
    if not a or not b or not str(a).strip() or not str(b).strip():
        return False
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return x == y
    if x is not None or y is not None:
        return False
    na, nb = normalize_text(a), normalize_text(b)
    return bool(na) and na == nb
