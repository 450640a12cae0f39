"""LaTeX answers before any parser sees them: a cheap canonical form for exact comparison
(`normalize_latex`) and the gate in front of sympy (`safe_for_sympy`). Pure string work, bounded
by `MAX_LATEX_CHARS`; nothing here parses or evaluates the text."""

from __future__ import annotations

import re

#: Answers longer than this never reach sympy (compared as normalised strings only).
MAX_LATEX_CHARS = 400
MAX_BRACE_DEPTH = 12
#: Exponents nested deeper than this are refused whatever they hold (e^{x^{y^{z}}}).
MAX_EXPONENT_DEPTH = 2
MAX_FRAC_COUNT = 12

_LATEX_NOISE = [
    (re.compile(r"\\left|\\right|\\displaystyle|\\!|\\,|\\;|\\:|\\ |~"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\text\{\s*([^{}]*?)\s*\}|\\textbf\{\s*([^{}]*?)\s*\}|\\mbox\{\s*([^{}]*?)\s*\}"),
     lambda m: m.group(1) or m.group(2) or m.group(3) or ""),
    (re.compile(r"\^\s*\{?\\circ\}?|\^\s*\\circ|°"), ""),
    (re.compile(r"\s+"), ""),
]


def normalize_latex(s: str) -> str:
    """A cheap canonical form for exact comparison before sympy: no spacing commands,
    \\left/\\right, \\dfrac/\\tfrac, \\text{} wrappers, degree signs, $ or whitespace."""
    s = str(s).strip().strip("$").strip()
    for pattern, repl in _LATEX_NOISE:
        s = pattern.sub(repl, s)
    return s.rstrip(".")


# Text that looks like code never reaches a parser (belt and braces: nothing here evaluates it).
_CODE_LIKE = re.compile(r"import |lambda|__|def |\b(?:exec|eval)\s*\(")
_UNBRACED_TOWER = re.compile(r"\^\s*[\w.]+\s*\^")  # a^b^c
_PAREN_EXPONENT = re.compile(r"\^\s*\(([^()]*)\)")  # 9^(9^9): math-verify reads 9**(9**9)
_COMMAND = re.compile(r"\\[A-Za-z]+")


def safe_for_sympy(s: str) -> bool:
    """Refuse input that could make sympy run away before it gets there: long text, deep
    nesting, power towers (9^{9^{9}}, 9^{9^9}, 9^(9^9), 9^9^9), many fractions, code.

    A tower is an exponent that itself holds a power with no variable in it: sympy would
    compute 9^387420489. A symbolic one such as e^{x^2} stays (sympy keeps it unevaluated)."""
    if len(s) > MAX_LATEX_CHARS or _CODE_LIKE.search(s):
        return False
    exponents = _exponent_groups(s)
    if exponents is None or _UNBRACED_TOWER.search(s):
        return False  # unbalanced or too deep, or a^b^c
    exponents += _PAREN_EXPONENT.findall(s)
    if any("^" in e and not _has_variable(e) for e in exponents):
        return False
    if s.count("\\frac") + s.count("\\dfrac") > MAX_FRAC_COUNT:
        return False
    if re.search(r"\d{60,}", s):
        return False
    if "!" in s and ("^" in s or re.search(r"\d{4,}", s)):
        return False  # (10^{6})! : a factorial sympy would try to compute
    return True


def _exponent_groups(s: str) -> list[str] | None:
    """The text of every braced exponent (the group after "^{"), or None when the braces are
    unbalanced or nest deeper than MAX_BRACE_DEPTH (exponents: MAX_EXPONENT_DEPTH)."""
    stack: list[tuple[int, bool]] = []  # per open brace: (position, does it open an exponent?)
    groups: list[str] = []
    exp_depth = 0
    prev = ""
    for i, c in enumerate(s):
        if c == "{":
            is_exp = prev == "^"
            stack.append((i, is_exp))
            exp_depth += is_exp
            if len(stack) > MAX_BRACE_DEPTH or exp_depth > MAX_EXPONENT_DEPTH:
                return None
        elif c == "}":
            if not stack:
                return None
            start, is_exp = stack.pop()
            exp_depth -= is_exp
            if is_exp:
                groups.append(s[start + 1:i])
        if not c.isspace():
            prev = c
    return None if stack else groups


def _has_variable(exponent: str) -> bool:
    """Does an exponent name a variable (a letter outside LaTeX commands such as \\frac, \\pi)?"""
    return any(c.isalpha() for c in _COMMAND.sub("", exponent))
