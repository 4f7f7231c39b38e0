"""Passages of a chunk: what a question writer is shown at once, and which passages are asked.

Question writers, GPT-3.5 and SmolLM alike, ask about the start of what they read (45-49% of
their questions match the first window of a long chunk, where people's match it 23% of the
time, about an even spread: issue #27). So a chunk longer than ``passage_words`` is cut into
passages of about that many words, ending at sentence ends where one is near, and its questions
are spread over the passages; the positive of every pair stays the whole chunk. Private module.
"""

from __future__ import annotations

import math
import random
import re

#: Words a question writer reads at once: about one all-MiniLM-L6-v2 window (256 word pieces)
#: and what SmolLM2-135M was measured to handle (generate/offline.py).
PASSAGE_WORDS = 200

_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*$")


def passage_spans(text: str, max_words: int | None = PASSAGE_WORDS) -> list[tuple[int, int]]:
    """``(start, end)`` characters of each passage of ``text``; one span, the whole text, when
    it holds at most ``max_words * 1.5`` words (or ``max_words`` is None).

    A longer text is cut into ``round(words / max_words)`` passages of about equal word counts,
    each cut moved to the nearest sentence end within a third of a passage.

    Example:
        >>> passage_spans("One two. Three four.", max_words=2)
        [(0, 8), (9, 20)]
    """
    words = [m.span() for m in _WORD.finditer(text)]
    if max_words is None or len(words) <= max_words * 1.5:
        return [(0, len(text))]
    count = max(2, round(len(words) / max_words))
    size = len(words) / count
    cuts = [0]
    for k in range(1, count):
        cuts.append(_sentence_cut(text, words, round(k * size), size / 3, cuts[-1]))
    cuts.append(len(words))
    return [(words[a][0], words[b - 1][1]) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _sentence_cut(
    text: str, words: list[tuple[int, int]], target: int, reach: float, after: int
) -> int:
    """The word index nearest ``target`` that follows a sentence end (else ``target``)."""
    best = None
    low, high = max(after + 1, math.ceil(target - reach)), min(len(words), int(target + reach) + 1)
    for i in range(low, high):
        if _SENTENCE_END.search(text[words[i - 1][0] : words[i - 1][1]]):
            if best is None or abs(i - target) < abs(best - target):
                best = i
    return best if best is not None else max(target, after + 1)


def spread_questions(passages: int, questions: int, rng: random.Random) -> list[int]:
    """Questions per passage: ``questions`` spread evenly over ``passages`` with a random phase,
    so over many chunks every passage is asked as often as any other.

    With at least as many questions as passages every passage is asked about; with fewer, the
    asked passages are evenly spaced from a random start (stratified sampling).

    Example:
        >>> spread_questions(4, 2, random.Random(0))
        [0, 1, 0, 1]
        >>> spread_questions(2, 4, random.Random(0))
        [2, 2]
    """
    counts = [questions // passages] * passages
    phase = rng.random()
    for j in range(questions % passages):
        counts[int((j + phase) * passages / (questions % passages)) % passages] += 1
    return counts


def passage_of(spans: list[tuple[int, int]], offset: int) -> int:
    """The index of the passage holding character ``offset`` (the last one starting before it)."""
    index = 0
    for i, (start, _) in enumerate(spans):
        if start <= offset:
            index = i
    return index


def position(spans: list[tuple[int, int]], index: int, shift: int = 0) -> dict[str, int]:
    """What a dataset records of where a question came from (``query_positions``)."""
    start, end = spans[index]
    return {"passage": index, "passages": len(spans), "start": start + shift, "end": end + shift}


def asked_passages(
    text: str, node_id: str, questions: int, max_words: int | None, seed: int | None = None
) -> list[tuple[dict[str, int], int]]:
    """(position of the passage in ``text``, questions to ask of it) for each asked passage of
    one chunk: the whole text with every question when it is short (see :func:`passage_spans`).
    The draw of the passages is seeded by ``seed`` and ``node_id``: a rerun asks the same ones.

    Example:
        >>> asked_passages("Short text.", "n1", 2, PASSAGE_WORDS)
        [({'passage': 0, 'passages': 1, 'start': 0, 'end': 11}, 2)]
    """
    spans = passage_spans(text, max_words)
    if len(spans) == 1:
        return [(position(spans, 0), questions)]
    counts = spread_questions(len(spans), questions, random.Random(f"{seed or 0}:{node_id}"))
    return [(position(spans, i), k) for i, k in enumerate(counts) if k]
