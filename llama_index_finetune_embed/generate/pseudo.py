"""Training pairs made without an LLM: inverse-cloze pseudo-queries and independent crops.

Two unsupervised recipes known to train retrievers from raw text:

* ``"ict"`` - inverse cloze task (Lee et al. 2019, ORQA): a sentence of the chunk is the query;
  the positive is the chunk, with that sentence removed with probability ``remove_prob``.
  ORQA removes it 90% of the time to pre-train a retriever from scratch; for finetuning a
  trained one we measured keeping it better (all-MiniLM-L6-v2 trained on Lyft 10-K chunks,
  tested on GPT-3.5 questions about Uber: MRR@10 0.597 -> 0.647 kept vs 0.629 removed 90%, one
  sentence per chunk), so the default is 0: the positive is the node itself.
* ``"crop"`` - independent cropping (Izacard et al. 2022, Contriever): a short span of the chunk
  is the query; the positive is an independently drawn large span (half to all of the chunk).

How positives are stored: a dataset's corpus maps one chunk id to one text, so a positive that
differs from the chunk (the chunk minus a sentence, a crop) is its own corpus entry with the id
``"<node id>#<method>:<hash>"``. Any trainer over (query, positive) pairs works with it, and
:func:`source_chunk_id` recovers the node a variant came from (e.g. to keep pairs of one chunk
out of each other's in-batch negatives). The corpus also keeps every node's own text under its
node id, so the dataset merges with LLM-written pairs built from the same nodes. Pseudo pairs are
for training only: evaluate on real questions against the node texts. This module calls no LLM
and imports none: mixing these pairs with LLM questions is the job of
:mod:`~llama_index_finetune_embed.generate.offline`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from llama_index_finetune_embed._io import text_hash
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.generate._passages import passage_of, passage_spans, position
from llama_index_finetune_embed.generate._sentences import split_sentences

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode


PseudoMethod = Literal["ict", "crop"]
#: The pseudo-query methods, as ``generate_pseudo_queries(method=...)`` names them.
METHODS: tuple[PseudoMethod, ...] = ("ict", "crop")
_VARIANT_SEP = "#"
_WORD = re.compile(r"\S+")


def generate_pseudo_queries(
    nodes: Sequence[BaseNode],
    *,
    method: PseudoMethod = "ict",
    per_chunk: int = 1,
    remove_prob: float = 0.0,
    min_words: int = 6,
    max_query_words: int = 64,
    seed: int = 0,
    metadata_mode: str = "embed",
) -> EmbeddingQAFinetuneDataset:
    """Return (pseudo-query, positive) training pairs made from ``nodes`` without an LLM.

    Args:
        nodes: the chunks (LlamaIndex nodes) to learn from.
        method: ``"ict"`` (a sentence as the query, the chunk as the positive) or ``"crop"``
            (a short span as the query, an independent large span as the positive).
        per_chunk: pseudo-queries drawn per chunk (fewer when a chunk has fewer sentences).
        remove_prob: ICT only: probability that the query sentence is removed from its positive.
        min_words: shortest usable query, in words (shorter sentences are never queries).
        max_query_words: longer query sentences/spans are cut to this many words.
        seed: the draw is deterministic for a given seed and node list.
        metadata_mode: how positives are rendered (``node.get_content(metadata_mode=...)``); use
            the mode the index embeds with.

    Every query is tagged with ``method`` in ``query_sources``; see the module docstring for how
    positives are stored.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> text = "Lyft was founded in 2012 by two friends.It connects riders with drivers daily."
        >>> ds = generate_pseudo_queries([TextNode(id_="n1", text=text)], remove_prob=1.0)
        >>> [(q, ds.corpus[d[0]]) for q, d in zip(ds.queries.values(), ds.relevant_docs.values())]
        [('It connects riders with drivers daily.', 'Lyft was founded in 2012 by two friends.')]
    """
    _check_options(method, per_chunk, remove_prob, min_words, max_query_words)
    from llama_index.core.schema import MetadataMode

    mode = MetadataMode(metadata_mode)
    rng = random.Random(f"{seed}:{method}")
    draw = _draw_ict if method == "ict" else _draw_crop
    corpus = {node.node_id: node.get_content(metadata_mode=mode) for node in nodes}
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    where: dict[str, dict[str, int]] = {}
    for node in nodes:
        body = node.get_content(metadata_mode=MetadataMode.NONE)
        spans, shift = passage_spans(body), max(0, corpus[node.node_id].find(body))
        for query, positive in draw(body, rng, per_chunk, remove_prob, min_words, max_query_words):
            doc_id = node.node_id
            if positive != body:
                doc_id = variant_id(node.node_id, method, positive)
                corpus[doc_id] = _render(node, positive, mode)
            qid = variant_id(node.node_id, method, query, doc_id)
            queries[qid] = query
            relevant[qid] = [doc_id]
            offset = _locate(body, query)
            if doc_id == node.node_id and offset is not None:
                where[qid] = position(spans, passage_of(spans, offset), shift)
    if not corpus:
        raise ValueError("nodes is empty: pseudo-queries need at least one chunk")
    return EmbeddingQAFinetuneDataset(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        metadata_mode=mode.value,
        query_sources=dict.fromkeys(queries, method),
        query_positions=where,
    )


def variant_id(node_id: str, method: str, *texts: str) -> str:
    """Stable id of a pseudo query/positive made from ``node_id``: ``"<node id>#<method>:<h>"``."""
    return f"{node_id}{_VARIANT_SEP}{method}:{text_hash(chr(31).join(texts))[:16]}"


def source_chunk_id(chunk_id: str) -> str:
    """The node id a pseudo positive was derived from (the id itself for an ordinary chunk).

    Example:
        >>> source_chunk_id(variant_id("node-1", "ict", "text")), source_chunk_id("node-1")
        ('node-1', 'node-1')
    """
    head, sep, tail = chunk_id.rpartition(_VARIANT_SEP)
    if sep and tail.split(":", 1)[0] in METHODS:
        return head
    return chunk_id


def _check_options(
    method: str, per_chunk: int, remove_prob: float, min_words: int, max_query_words: int
) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if per_chunk < 1:
        raise ValueError(f"per_chunk must be >= 1, got {per_chunk}")
    if not 0.0 <= remove_prob <= 1.0:
        raise ValueError(f"remove_prob must be between 0 and 1, got {remove_prob}")
    if min_words < 1 or max_query_words < min_words:
        raise ValueError(
            f"need 1 <= min_words <= max_query_words, got {min_words} and {max_query_words}"
        )


def _usable(sentence: str, min_words: int) -> bool:
    """A query candidate: enough words, and mostly words rather than numbers (not a table row)."""
    words = sentence.split()
    if len(words) < min_words:
        return False
    alpha = sum(1 for w in words if any(c.isalpha() for c in w))
    return alpha >= 0.6 * len(words)


def _draw_ict(
    body: str, rng: random.Random, k: int, remove_prob: float, min_words: int, max_words: int
) -> list[tuple[str, str]]:
    """(sentence, chunk without it - or, with probability 1 - remove_prob, the whole chunk)."""
    sentences = split_sentences(body)
    candidates = [i for i, s in enumerate(sentences) if _usable(s, min_words)]
    if len(sentences) < 2 or not candidates:
        return []
    pairs = []
    for i in sorted(rng.sample(candidates, min(k, len(candidates)))):
        query = " ".join(sentences[i].split()[:max_words])
        positive = body
        if rng.random() < remove_prob:
            positive = " ".join(sentences[:i] + sentences[i + 1 :])
        pairs.append((query, positive))
    return pairs


def _draw_crop(
    body: str, rng: random.Random, k: int, remove_prob: float, min_words: int, max_words: int
) -> list[tuple[str, str]]:
    """(short span, independent span of 50-100% of the chunk); spans are whole-word runs."""
    del remove_prob  # ICT only
    words = _WORD.findall(body)
    n = len(words)
    if n < 2 * min_words:
        return []
    pairs = []
    for _ in range(k):
        q_len = rng.randint(min_words, min(max_words, max(min_words, n // 4)))
        q_start = rng.randrange(n - q_len + 1)
        p_len = rng.randint((n + 1) // 2, n)
        p_start = rng.randrange(n - p_len + 1)
        query = " ".join(words[q_start : q_start + q_len])
        positive = " ".join(words[p_start : p_start + p_len])
        pairs.append((query, body if p_len == n else positive))
    return pairs


def _locate(body: str, query: str) -> int | None:
    """Where ``query`` (words of ``body``, spacing normalized) starts in ``body``."""
    words = query.split()[:8]
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(w) for w in words), body)
    return match.start() if match else None


def _render(node: BaseNode, text: str, mode: object) -> str:
    """``text`` rendered like ``node`` would be (with its metadata header where the mode says)."""
    from llama_index.core.schema import TextNode

    if isinstance(node, TextNode):
        return node.model_copy(update={"text": text}).get_content(metadata_mode=mode)
    return text
