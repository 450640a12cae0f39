"""Text every task reads: one Unicode rule (`canonical_text`), whitespace normalisation, and the
answer-string helpers extraction is built from. Everything here is linear in the text length:
model responses are untrusted and may be megabytes of a degenerate loop."""

from __future__ import annotations

import re
import unicodedata

_SUPERSCRIPTS = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u207b]+")


def canonical_text(s: str) -> str:
    """The one Unicode rule for every task: superscripts as ^{...} (NFKC alone would turn
    "5²" into "52"), NFKC (full-width and math-bold digits, compatibility forms), format
    characters dropped (bidi marks U+200E/F, U+202A-E, U+2066-9, zero-width spaces, BOM),
    every decimal digit (Arabic-Indic, Devanagari, ...) as ASCII, fraction slash and minus
    sign as / and -."""
    s = str(s)
    if s.isascii():
        return s
    s = _SUPERSCRIPTS.sub(lambda m: "^{" + unicodedata.normalize("NFKC", m.group(0)) + "}", s)
    s = unicodedata.normalize("NFKC", s)
    # One table over the distinct characters, applied by str.translate: C speed on a megabyte
    # of non-ASCII text (a per-character Python loop took 0.25 s per MB).
    table = {ord(c): _ascii_form(c) for c in set(s) if not c.isascii()}
    return s.translate(table)


_SLASH_MINUS = {"\u2044": "/", "\u2212": "-"}


def _ascii_form(c: str) -> str:
    """A non-ASCII character as `canonical_text` writes it: format characters dropped, decimal
    digits as ASCII, fraction slash and minus sign as / and -, anything else kept."""
    category = unicodedata.category(c)
    if category == "Cf":
        return ""
    if category == "Nd":
        return str(unicodedata.decimal(c))
    return _SLASH_MINUS.get(c, c)


def normalize_text(s: str) -> str:
    """Canonical (see `canonical_text`), whitespace-collapsed, stripped, without trailing
    sentence punctuation."""
    return " ".join(canonical_text(s).split()).strip().rstrip(".").strip()


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")


def last_boxed(text: str, window: int = 10_000) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} whose braces balance within `window`
    characters, or None. An unclosed last box falls back to the previous closed one.

    Linear in the text length: boxes are tried from the last one back, and a box's scan stops
    at the next box's opening brace. That is safe because the next box was tried first and did
    not close within its own window, which covers the rest of this box's window; so this box
    cannot close there either. (Scanning each box's whole window instead made a response looping
    on `\\boxed{` quadratic: 1 MB took 100 s.)
    """
    text = text or ""
    starts = [m.end() for m in _BOXED.finditer(text)]
    limit = len(text)
    for start in reversed(starts):
        depth = 1
        for m in _BRACE.finditer(text, start, min(limit, start + window)):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                return text[start:m.start()].strip()
        limit = start - 1  # this box's "{": an earlier box reaching it unclosed stays unclosed
    return None


def last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    """The last match of `pattern` in `text`, or None; one pass, without keeping every match of
    a megabyte loop (the pattern must be linear, as all of ours are)."""
    found = None
    for found in pattern.finditer(text):
        pass
    return found


def last_nonempty(pattern: re.Pattern, text: str) -> str | None:
    """Group 1 of the last match of `pattern` in `text` that is not blank, stripped; None if
    there is none. One pass over the text (the pattern must be linear, as all of ours are)."""
    found = None
    for m in pattern.finditer(text):
        value = m.group(1).strip()
        if value:
            found = value
    return found
