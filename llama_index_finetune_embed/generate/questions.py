"""Turn what an LLM wrote into clean questions: parse the list, then filter what is not a question.

The public entry point is :func:`parse_questions` (re-exported by the package).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["parse_questions"]

# "1.", "1)", "(1)", "[1]", "#1", "1 -", "Q1:", "Q:", "Question 1:", "Question #2 -", "a)", bullets.
_MARKER = re.compile(
    r"""^\s*(?:
        [-*+\u2022\u2023\u25cf\u25e6\u00b7>]+\s*           # bullets
      | \(?\[?\#?\d{1,3}\s*[.):\]]\s*                      # 1.  1)  (1)  [1]  #1:
      | \#?\d{1,3}\s+-\s+                                  # 1 - What ...
      | \(?[a-hA-H][.)]\s+                                 # a)  b.  (c)
      | (?:question|query|q)\s*\#?\s*\d{0,3}\s*[:.)\-\u2013]\s*  # Question 1:  Q2.  Q:
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_ANSWER_LABEL = re.compile(r"^\s*(?:answer|ans|a)\s*\#?\s*\d{0,3}\s*[:.)\-\u2013]", re.IGNORECASE)
# An answer appended on the same line: "What is X? Answer: Y" / "... (Answer: Y)".
_INLINE_ANSWER = re.compile(r"\s[(\[]?\s*(?:answer|ans|a)\s*\d{0,3}\s*:\s", re.IGNORECASE)
# Several numbered questions on one line: "1. What? 2. Why?"
_INLINE_NUMBER = re.compile(r"(?<=[?.])\s+(?=(?:\d{1,3}[.)]|Q\d{1,3}[:.)])\s)")
_PREAMBLE = re.compile(
    r"""^(?:sure|certainly|of\ course|okay|ok|absolutely|great|alright|here\ (?:are|is|'s)
        |below\ (?:are|is)|the\ following|following\ are|i\ hope|i've|i\ have|i\ can|i\ cannot
        |i\ can't|i'm|i\ am|as\ an\ ai|let\ me|note\b|these\ questions|this\ (?:quiz|set)
        |answers?\b)""",
    re.IGNORECASE | re.VERBOSE,
)
# Words a question item may start with when it does not contain a "?" (GPT-3.5 writes
# "Explain how ... ." and "How does X? Discuss Y." items; both are questions for retrieval).
_QUESTION_STARTS = frozenset(
    """what who whom whose when where why which how describe explain discuss list name identify
    compare contrast summarize summarise outline analyze analyse evaluate assess define""".split()
)
_JSON_QUESTION_KEYS = ("question", "query", "q", "text")
_JSON_LIST_KEYS = ("questions", "queries", "items", "results")
_MIN_WORDS = 3


def parse_questions(text: str, context: str = "", max_questions: int | None = None) -> list[str]:
    """Return the questions in an LLM's answer, cleaned, filtered and capped at ``max_questions``.

    Accepts what real LLMs write: numbered lists (``1.``, ``1)``, ``(1)``), bullets,
    ``Question 1:``/``Q1:`` labels (alone on a line or before the question), JSON arrays (of
    strings or of ``{"question": ...}`` objects, also inside code fences or after a preamble),
    markdown bold, quotes and blank lines. Rejects what is not a question: preambles ("Sure!
    Here you go:"), headings, answers (``Answer:`` lines, or an answer appended after the
    question), empty or tiny lines, duplicates (ignoring case and spacing), and, when
    ``context`` is given, questions longer than the context or copied verbatim from it.

    Args:
        text: The LLM's raw output.
        context: The chunk the questions are about ("" skips the context checks).
        max_questions: Keep at most this many (``None``: keep all).

    Example:
        >>> parse_questions("Sure! Here you go:\\n1. Who founded Lyft?\\n2) When was it founded?",
        ...                 "Lyft was founded in 2012 by Logan Green and John Zimmer.", 2)
        ['Who founded Lyft?', 'When was it founded?']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if max_questions is not None and max_questions < 0:
        raise ValueError(f"max_questions must be >= 0 or None, got {max_questions}")
    candidates = _json_candidates(text)
    if candidates is None:
        candidates = _line_candidates(text)
    context_key = _normalize(context)
    questions: list[str] = []
    seen: set[str] = set()
    for raw in candidates:
        question = _clean(raw)
        key = _normalize(question)
        if not question or key in seen or not _is_question(question):
            continue
        if context and (len(question) > len(context) or key in context_key):
            continue
        seen.add(key)
        questions.append(question)
        if max_questions is not None and len(questions) >= max_questions:
            break
    return questions


# -- candidates ------------------------------------------------------------------------------


def _json_candidates(text: str) -> list[str] | None:
    """The string items of a JSON answer (whole text, code fence, or first ``[...]``), else None."""
    body = _strip_code_fence(text.strip())
    attempts = [body]
    start, end = body.find("["), body.rfind("]")
    if 0 <= start < end:
        attempts.append(body[start : end + 1])
    for attempt in attempts:
        try:
            data = json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            continue
        items = _json_items(data)
        if items is not None:
            return items
    return None


def _json_items(data: Any) -> list[str] | None:
    if isinstance(data, dict):
        for key in _JSON_LIST_KEYS:
            if isinstance(data.get(key), list):
                return _json_items(data[key])
        return None
    if not isinstance(data, list):
        return None
    items: list[str] = []
    for item in data:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, dict):
            values = [item[k] for k in _JSON_QUESTION_KEYS if isinstance(item.get(k), str)]
            items.extend(values[:1])
    return items


def _strip_code_fence(text: str) -> str:
    match = re.match(r"^```[\w-]*\s*\n(.*?)\n?```\s*$", text, re.DOTALL)
    return match.group(1).strip() if match else text


def _line_candidates(text: str) -> list[str]:
    """One candidate per line (numbered items on one line are split), answer lines dropped."""
    lines: list[str] = []
    for line in text.splitlines():
        if _ANSWER_LABEL.match(_strip_markdown(line)):
            continue
        lines.extend(_INLINE_NUMBER.split(line))
    return lines


# -- cleaning and checks ---------------------------------------------------------------------


def _strip_markdown(line: str) -> str:
    line = line.strip().lstrip("#").strip()
    return line.replace("**", "").replace("__", "").strip()


def _clean(raw: str) -> str:
    """Strip markers, labels, markdown, quotes and an appended answer from one candidate."""
    line = _strip_markdown(raw)
    for _ in range(3):  # "1. **Question 1:** ..." has two markers
        stripped = _MARKER.sub("", line, count=1).strip()
        if stripped == line:
            break
        line = stripped
    match = _INLINE_ANSWER.search(line)
    if match and "?" in line[: match.start()]:
        line = line[: match.start()]
    line = line.strip().rstrip(",;").strip()
    while len(line) >= 2 and line[0] in "\"'\u201c\u2018`" and line[-1] in "\"'\u201d\u2019`":
        line = line[1:-1].strip()
    return re.sub(r"\s+", " ", line)


def _is_question(question: str) -> bool:
    words = question.split()
    if len(words) < _MIN_WORDS or not any(ch.isalpha() for ch in question):
        return False
    if question.endswith(":") or _PREAMBLE.match(question):
        return False
    if "?" in question:
        return True
    first = re.sub(r"[^a-z]", "", words[0].lower())
    return first in _QUESTION_STARTS


def _normalize(text: str) -> str:
    """Casefolded, single-spaced, without trailing punctuation: the key for duplicates/copies."""
    return re.sub(r"\s+", " ", text.casefold()).strip().rstrip("?.!").strip()
