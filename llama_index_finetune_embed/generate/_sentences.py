"""A sentence splitter robust to PDF text that drops the space after a period (private)."""

from __future__ import annotations

import re

# Words whose trailing period does not end a sentence ("U.S. Securities", "Mr. Green").
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st co corp ltd no nos vs etc e.g i.e approx dept est fig
    jan feb mar apr jun jul aug sep sept oct nov dec al cf ca resp vol pp sec""".split()
)
# Candidate boundaries: terminal punctuation (plus closing quotes/brackets) then either
# whitespace or - as in PDF text like "operations.We" - directly a capitalised word.
_BOUNDARY = re.compile(r"""[.!?]["'”’)\]]*(?:\s+|(?=[A-Z“"(][a-z]))""")


def split_sentences(text: str) -> list[str]:
    """Return the sentences of ``text``, robust to PDF text that drops the space after a period.

    Splits at ``. `` / ``! `` / ``? `` followed by a capital, digit or quote, and at a period
    glued to a capitalised word (``"operations.We"``, ``"in 2020.The"``), but not inside
    decimals (``"$1.5 billion"``), initialisms (``"U.S."``, ``"D.C."``) or common abbreviations.

    Example:
        >>> split_sentences("Revenue was $1.5 billion in the U.S. in 2021.We grew. Mr. Li left.")
        ['Revenue was $1.5 billion in the U.S. in 2021.', 'We grew.', 'Mr. Li left.']
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end >= len(text) or not _is_boundary(text, match.start(), end):
            continue
        sentence = text[start : match.start() + 1 + _closers(text, match.start())].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _closers(text: str, pos: int) -> int:
    """Number of closing quotes/brackets right after the punctuation at ``pos``."""
    n = 0
    while pos + 1 + n < len(text) and text[pos + 1 + n] in "\"'”’)]":
        n += 1
    return n


def _is_boundary(text: str, punct: int, end: int) -> bool:
    """Whether the punctuation at ``punct`` ends a sentence, given what precedes and follows it."""
    nxt = text[end]
    if not (nxt.isupper() or nxt.isdigit() or nxt in "“\"("):
        return False
    if text[punct] != ".":
        return True
    word = text[:punct].rsplit(None, 1)[-1] if text[:punct].strip() else ""
    word = word.lstrip("(\"“'")
    if not word:
        return True
    if word.lower() in _ABBREVIATIONS or word.lower() + "." in _ABBREVIATIONS:
        return False
    # Initialisms: "U.S", "D.C", single capitals ("John F. Kennedy").
    if re.fullmatch(r"(?:[A-Za-z]\.)*[A-Z]", word):
        return False
    glued = end == punct + 1 + _closers(text, punct)
    if glued and not (word[-1].islower() or word[-1].isdigit() or word[-1] in ")%”\""):
        return False
    return True
