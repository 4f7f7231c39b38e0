"""Cutting chunks into windows the embed model reads whole (its tokenizer, its length, its prompt).

A :class:`WindowSplitter` is made once per embed model (:func:`window_splitter`) and gives, for a
node, the texts an index embeds for it (:meth:`WindowSplitter.window_texts`): the node's own
embedded text when it fits the model's window, else pieces of its text cut at word boundaries,
each at most the model's window with the node's metadata header. Window ``i`` of a node is
stored under :func:`window_id` and carries ``window_of`` (the node's id) in its metadata.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Metadata key of a window node: the id of the node it was cut from.
WINDOW_OF = "window_of"
#: Tokens per window for embed models whose tokenizer is not known here (API models), counted
#: with LlamaIndex's tokenizer (``Settings.tokenizer``, cl100k); not measured, pass your own.
API_WINDOW_TOKENS = 512
#: Consecutive windows share a quarter of a window by default.
DEFAULT_OVERLAP_DIVISOR = 4
_MIN_TEXT_TOKENS = 16  # every window reads at least this much text (tiny windows)
_NAMESPACE = uuid.UUID("6f1c1f2e-5d0b-4a52-9a3e-6d1b8c3f9a10")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class WindowSplitter:
    """Splits texts into windows of at most ``tokens`` tokens, consecutive ones sharing ``overlap``.

    ``count(text)`` counts tokens as the model does; ``offsets(text)`` gives each token's
    ``(start, end)`` characters (or each word's with its token count as ``weights``).
    """

    tokens: int
    overlap: int
    offsets: Callable[[str], tuple[list[tuple[int, int]], list[int]]]
    full_tail: bool = False

    def split_text(self, text: str, room: int | None = None) -> list[str]:
        """``text`` as windows of at most ``room`` (default ``tokens``) tokens; whole if it fits."""
        room = self.tokens if room is None else room
        spans, weights = self.offsets(text)
        if sum(weights) <= room:
            return [text]
        cuts = _cuts(spans, weights, room, self.overlap, text)
        if self.full_tail:
            cuts = _fill_tail(cuts, spans, weights, room, text)
        return [text[spans[a][0] : spans[b - 1][1]] for a, b in cuts]

    def window_texts(self, node: Any) -> list[str]:
        """What an index embeds for ``node``: its embedded text when that fits one window, else
        its text in windows, each with the node's metadata header (see :meth:`layout`)."""
        return self.layout(node)[0]

    def layout(self, node: Any) -> tuple[list[str], bool]:
        """``(window texts as embedded, whether the metadata header was cut)``.

        A header (the metadata a node embeds, e.g. titles, summaries or questions written by
        LlamaIndex extractors) takes its room in every window; one longer than half a window is
        cut to half a window, so the windows still read the text and stay few.
        """
        from llama_index.core.schema import MetadataMode

        full = node.get_content(metadata_mode=MetadataMode.EMBED)
        total = sum(self.offsets(full)[1])
        if total <= self.tokens:
            return [full], False
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        meta = node.get_metadata_str(mode=MetadataMode.EMBED).strip()
        header = max(0, total - sum(self.offsets(text)[1]))
        if not meta or header == 0:
            return self.split_text(text), False
        cut = header > self.tokens // 2
        if cut:
            spans, weights = self.offsets(meta)
            glue = max(0, header - sum(weights))
            meta = _head(meta, spans, weights, max(1, self.tokens // 2 - glue))
            header = sum(self.offsets(_render(node, meta, ""))[1])
        room = max(_MIN_TEXT_TOKENS, self.tokens - header)
        return [_render(node, meta, piece) for piece in self.split_text(text, room)], cut

def window_splitter(
    embed_model: Any,
    *,
    window_tokens: int | None = None,
    overlap: int | None = None,
    full_tail: bool = False,
) -> WindowSplitter:
    """The splitter that fits ``embed_model``'s window exactly.

    A ``HuggingFaceEmbedding`` (or an adapter over one) is measured with its own tokenizer: its
    max length less the special tokens and the document prompt; ``window_tokens`` may only make
    that smaller. Any other model is given ``window_tokens`` (default ``API_WINDOW_TOKENS``)
    counted with LlamaIndex's tokenizer. ``overlap`` (default a quarter of a window, the best
    of 0, 1/4 and 1/2 over short and long sets: docs/guide.md, "Long chunks") is what consecutive
    windows share.

    Raises:
        ValueError: ``window_tokens`` below 1 or ``overlap`` not in ``0..window_tokens // 2``.
    """
    if window_tokens is not None and window_tokens < 1:
        raise ValueError(f"window_tokens must be >= 1, got {window_tokens!r}")
    hf = _hf_model(embed_model)
    room = _hf_room(hf) if hf is not None else None
    if room is not None:
        tokens = min(room, window_tokens) if window_tokens else room
        offsets = _hf_offsets(hf._model.tokenizer)
    else:
        tokens = window_tokens or API_WINDOW_TOKENS
        offsets = _word_offsets(_llama_tokenizer())
    overlap = tokens // DEFAULT_OVERLAP_DIVISOR if overlap is None else overlap
    if not 0 <= overlap <= tokens // 2:
        raise ValueError(f"overlap must be in 0..{tokens // 2} (half a window), got {overlap!r}")
    return WindowSplitter(tokens=tokens, overlap=overlap, offsets=offsets, full_tail=full_tail)


def tokenizer_splitter(
    tokenizer: Any, tokens: int, *, overlap: int | None = None
) -> WindowSplitter:
    """A splitter of windows of ``tokens`` tokens of a Hugging Face fast ``tokenizer``, cut as
    :func:`window_splitter` cuts them for a model (for code that holds a model, not an index's
    embed model: the finetuning guard scores candidates in the windows they are served in).

    Example:
        >>> splitter = tokenizer_splitter(model.tokenizer, 254)  # doctest: +SKIP
        >>> splitter.split_text(long_text)  # doctest: +SKIP
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens!r}")
    overlap = tokens // DEFAULT_OVERLAP_DIVISOR if overlap is None else overlap
    return WindowSplitter(tokens=tokens, overlap=overlap, offsets=_hf_offsets(tokenizer))


# -- cutting --------------------------------------------------------------------------------


def _cuts(
    spans: list[tuple[int, int]], weights: list[int], room: int, overlap: int, text: str
) -> list[tuple[int, int]]:
    """``(first, stop)`` unit indices of each window: at most ``room`` tokens, ending before a
    word start when one lies in the window's second half, the next one ``overlap`` tokens back."""
    cum = [0]
    for w in weights:
        cum.append(cum[-1] + w)
    out, start, n = [], 0, len(spans)
    while start < n:
        stop = start + 1
        while stop < n and cum[stop + 1] - cum[start] <= room:
            stop += 1
        if stop < n:
            stop = _word_start_before(spans, text, start, stop, room, cum)
        out.append((start, stop))
        if stop >= n:
            break
        back = stop
        while back > start + 1 and cum[stop] - cum[back - 1] <= overlap:
            back -= 1
        start = back
    return out


def _fill_tail(
    cuts: list[tuple[int, int]],
    spans: list[tuple[int, int]],
    weights: list[int],
    room: int,
    text: str,
) -> list[tuple[int, int]]:
    """The last window moved back to hold a full window (a short tail read alone is noisy)."""
    if len(cuts) < 2:
        return cuts
    n, total, start = len(spans), 0, len(spans)
    while start > 0 and total + weights[start - 1] <= room:
        start -= 1
        total += weights[start]
    while start < n - 1 and not _starts_word(spans, text, start):
        start += 1
    return [*cuts[:-1], (max(start, cuts[-2][0] + 1), n)]


def _starts_word(spans: list[tuple[int, int]], text: str, i: int) -> bool:
    begin = spans[i][0]
    return begin == 0 or text[begin - 1].isspace() or spans[i - 1][1] < begin


def _word_start_before(
    spans: list[tuple[int, int]], text: str, start: int, stop: int, room: int, cum: list[int]
) -> int:
    """The latest ``i <= stop`` where a word starts, if the window keeps half its room; else
    ``stop`` (a word longer than half a window is cut)."""
    for i in range(stop, start, -1):
        if cum[i] - cum[start] < room // 2:
            break
        if _starts_word(spans, text, i):
            return i
    return stop


def _render(node: Any, metadata_str: str, content: str) -> str:
    """``node``'s embedded text with ``metadata_str`` as its header and ``content`` as its text
    (as ``TextNode.get_content(MetadataMode.EMBED)`` renders it)."""
    template = getattr(node, "text_template", None) or "{metadata_str}\n\n{content}"
    return template.format(metadata_str=metadata_str, content=content).strip()


def _head(text: str, spans: list[tuple[int, int]], weights: list[int], tokens: int) -> str:
    """The first ``tokens`` tokens of ``text``."""
    used, end = 0, 0
    for (_, stop), weight in zip(spans, weights, strict=True):
        if used + weight > tokens:
            break
        used, end = used + weight, stop
    return text[:end]


def window_id(node_id: str, index: int) -> str:
    """The id window ``index`` of node ``node_id`` is stored under (a UUID: Qdrant and others
    want them; stable, so a window is found again from its node)."""
    return str(uuid.uuid5(_NAMESPACE, f"{node_id}\x00{index}"))


def parent_id(node: Any) -> str:
    """The id of the node a window was cut from (its own id for a node that is its own window)."""
    return str((node.metadata or {}).get(WINDOW_OF) or node.node_id)


# -- tokenizers -----------------------------------------------------------------------------


def _hf_model(embed_model: Any) -> Any:
    """The ``HuggingFaceEmbedding`` that embeds documents for ``embed_model`` (itself, or the
    frozen base of an adapter), or ``None``."""
    from llama_index_finetune_embed.embeddings import is_hf_embedding

    for candidate in (embed_model, getattr(embed_model, "base_embed_model", None),
                      getattr(embed_model, "_base_embed_model", None)):  # fmt: skip
        if candidate is not None and is_hf_embedding(candidate):
            return candidate
    return None


def _hf_room(hf: Any) -> int | None:
    """Content tokens one window holds: the window length (a finetuned model's recorded
    ``window_length``, else its max length) less special tokens and the document prompt."""
    model = hf._model
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        logger.warning("%s has no fast tokenizer: windows counted with LlamaIndex's", hf.model_name)
        return None
    if model.max_seq_length is None:
        return None
    length = min(getattr(hf, "window_length", None) or model.max_seq_length, model.max_seq_length)
    prompt = (model.prompts or {}).get("text") or ""
    used = tokenizer.num_special_tokens_to_add(pair=False)
    if prompt:
        used += len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    room = int(length) - used
    return room if room > 0 else None


def _hf_offsets(tokenizer: Any) -> Callable[[str], tuple[list[tuple[int, int]], list[int]]]:
    def offsets(text: str) -> tuple[list[tuple[int, int]], list[int]]:
        spans = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        spans = [tuple(s) for s in spans]
        return spans, [1] * len(spans)

    return offsets


def _llama_tokenizer() -> Callable[[str], Sequence[Any]]:
    from llama_index.core import Settings

    return Settings.tokenizer


def _word_offsets(
    count: Callable[[str], Sequence[Any]],
) -> Callable[[str], tuple[list[tuple[int, int]], list[int]]]:
    def offsets(text: str) -> tuple[list[tuple[int, int]], list[int]]:
        words = list(_WORD.finditer(text))
        return [m.span() for m in words], [max(1, len(count(m.group()))) for m in words]

    return offsets


def chunk_of(entry: Any) -> Any:
    """The chunk a window's entry carries, under the chunk's own id."""
    from llama_index.core.schema import TextNode

    return TextNode(
        id_=parent_id(entry),
        metadata={k: v for k, v in entry.metadata.items() if k != WINDOW_OF},
        excluded_embed_metadata_keys=_without_window_of(entry.excluded_embed_metadata_keys),
        excluded_llm_metadata_keys=_without_window_of(entry.excluded_llm_metadata_keys),
        **carried(entry),
    )


def _without_window_of(keys: list[str]) -> list[str]:
    return [k for k in keys if k != WINDOW_OF]


def carried(node: Any) -> dict[str, Any]:
    """The fields a chunk and its windows' entries share as they are: text, templates,
    relationships, character span."""
    from llama_index.core.schema import MetadataMode, TextNode

    return {
        "text": node.get_content(metadata_mode=MetadataMode.NONE),
        "metadata_template": node.metadata_template,
        "metadata_separator": node.metadata_separator,
        "text_template": getattr(node, "text_template", TextNode().text_template),
        "relationships": dict(node.relationships),
        "start_char_idx": getattr(node, "start_char_idx", None),
        "end_char_idx": getattr(node, "end_char_idx", None),
    }
