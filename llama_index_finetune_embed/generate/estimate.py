"""The bill before it is run up: calls, tokens, time and cost of a generation run, sending nothing.

:func:`estimate_qa_generation` renders every prompt the run would send (chunks already in the
resume cache left out), counts its tokens with the model's tokenizer where it is known (OpenAI
models: tiktoken's encodings shipped with llama-index-core, no download) and about four
characters a token otherwise, adds the completion it expects, and prices the total from
:data:`PRICES` (overridable). Nothing is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed.generate._passages import PASSAGE_WORDS, asked_passages
from llama_index_finetune_embed.generate.cache import cache_fingerprint, cached_node_ids

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

#: USD per million (prompt, completion) tokens, from OpenAI's pricing page as of 2025-06 (standard
#: tier; check yours). Pass ``prices=`` to override or add a model.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}
PRICES_DATE = "2025-06"

_CHAT_OVERHEAD = 7  # tokens a chat API adds around one user message
_TOKENS_PER_QUESTION = 25  # a generated question with its numbering and line break
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class GenerationEstimate:
    """What a generation run would send: ``calls`` first tries (retries come on top)."""

    model: str
    chunks: int
    cached_chunks: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    tokenizer: str
    seconds: float | None
    cost_usd: float | None
    passage_calls: int = 0  # calls about one passage of a long chunk (``passage_words``)

    def lines(self) -> list[str]:
        """The estimate as the CLI prints it."""
        time = "unknown (give --max-rpm/--max-tpm)" if self.seconds is None else _hms(self.seconds)
        cost = (
            f"${self.cost_usd:,.2f} (prices of {PRICES_DATE}; retries and refused calls extra)"
            if self.cost_usd is not None
            else "unknown: no price for this model (pass prices=)"
        )
        return [
            f"model: {self.model}",
            f"chunks: {self.chunks} ({self.cached_chunks} already in the cache, not counted)",
            f"calls: {self.calls} (first tries; retries come on top; {self.passage_calls} of them "
            "about one passage of a long chunk, so questions cover every part of it)",
            f"prompt tokens: {self.prompt_tokens:,} ({self.tokenizer})",
            f"completion tokens: {self.completion_tokens:,} (expected: ~{_TOKENS_PER_QUESTION} a "
            "question)",
            f"time at the rate limit: {time}",
            f"cost: {cost}",
        ]


def estimate_qa_generation(
    nodes: Sequence[BaseNode],
    model: str,
    *,
    qa_generate_prompt_tmpl: str | None = None,
    num_questions_per_chunk: int = 2,
    cache_path: str | os.PathLike[str] | None = None,
    llm_id: str | None = None,
    metadata_mode: str = "embed",
    max_rpm: float | None = None,
    max_tpm: float | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    passage_words: int | None = PASSAGE_WORDS,
    seed: int | None = None,
) -> GenerationEstimate:
    """Return what ``generate_qa_embedding_pairs`` would send for ``nodes``, sending nothing.

    ``model`` is the LLM's model name (e.g. ``"gpt-4o-mini"``); ``cache_path`` leaves out the
    chunks a resume cache already holds (``llm_id``: the id the run records, by default
    ``"OpenAI/<model>"``, what the OpenAI LLM's run records). ``passage_words`` and ``seed`` as
    given to the run: a long chunk costs one call per asked passage (``passage_calls`` of them),
    each prompt holding that passage only.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> node = TextNode(text="Lyft was founded in 2012.")
        >>> est = estimate_qa_generation([node], "gpt-4o-mini")
        >>> est.calls, est.cost_usd < 0.001
        (1, True)
    """
    from llama_index.core.schema import MetadataMode

    from llama_index_finetune_embed.generate.pairs import DEFAULT_QA_GENERATE_PROMPT_TMPL

    template = qa_generate_prompt_tmpl or DEFAULT_QA_GENERATE_PROMPT_TMPL
    mode = MetadataMode(metadata_mode)
    texts = {n.node_id: n.get_content(metadata_mode=mode) for n in nodes}
    cached: set[str] = set()
    if cache_path is not None and Path(cache_path).is_file():
        fingerprint = cache_fingerprint(
            template, llm_id or f"OpenAI/{model}", num_questions_per_chunk, mode, passage_words
        )
        cached = cached_node_ids(Path(cache_path), fingerprint, texts)
    count, tokenizer = _counter(model)
    todo = {nid: t for nid, t in texts.items() if nid not in cached and t.strip()}
    asks = [
        (text[spot["start"] : spot["end"]], k, spot["passages"] > 1)
        for nid, text in todo.items()
        for spot, k in asked_passages(text, nid, num_questions_per_chunk, passage_words, seed)
    ]
    prompt_tokens = sum(
        count(template.format(context_str=passage, num_questions_per_chunk=k)) + _CHAT_OVERHEAD
        for passage, k, _ in asks
    )
    completion_tokens = len(todo) * num_questions_per_chunk * _TOKENS_PER_QUESTION
    price = {**PRICES, **(prices or {})}.get(model)
    cost = None
    if price is not None:
        cost = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
    rates = []
    if max_rpm:
        rates.append(len(asks) / (max_rpm / 60))
    if max_tpm:
        rates.append((prompt_tokens + completion_tokens) / (max_tpm / 60))
    return GenerationEstimate(
        model=model, chunks=len(texts), cached_chunks=len(cached), calls=len(asks),
        passage_calls=sum(1 for *_, split in asks if split),
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, tokenizer=tokenizer,
        seconds=max(rates) if rates else None, cost_usd=cost,
    )  # fmt: skip


def _counter(model: str) -> tuple[Any, str]:
    """(text -> tokens, its description): tiktoken for OpenAI models, else ~4 characters."""
    name = "o200k_base" if model.startswith(("gpt-4o", "gpt-4.1", "o1", "o3", "o4")) else None
    if name is None and model.startswith(("gpt-4", "gpt-3.5", "text-embedding-")):
        name = "cl100k_base"
    if name is not None:
        encoding = _tiktoken_encoding(name)
        if encoding is not None:
            return (lambda text: len(encoding.encode(text, disallowed_special=()))), name
    return (lambda text: -(-len(text) // _CHARS_PER_TOKEN)), "estimated: ~4 characters a token"


def _tiktoken_encoding(name: str) -> Any:
    """A tiktoken encoding from the copies llama-index-core ships (no download), or None."""
    try:
        import llama_index.core
        import tiktoken
    except ImportError:
        return None
    shipped = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shipped))
    try:
        return tiktoken.get_encoding(name)
    except Exception:  # noqa: BLE001 - not shipped and offline: the estimate instead
        return None
    finally:
        if before is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


def _hms(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


#: USD per million input tokens of OpenAI's embedding models (openai.com/api/pricing, 2026-12).
EMBEDDING_PRICES: dict[str, float] = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}


@dataclass(frozen=True)
class EmbeddingEstimate:
    """What embedding texts with an API model would send: ``calls`` first tries."""

    model: str
    texts: int
    calls: int
    tokens: int
    cost_usd: float | None
    tokenizer: str = "cl100k_base"

    def lines(self) -> list[str]:
        cost = "unknown: no price for this model" if self.cost_usd is None else (
            f"${self.cost_usd:,.4f} (prices of 2026-12; retries extra)"
        )  # fmt: skip
        return [f"model: {self.model}", f"texts: {self.texts:,} in {self.calls:,} calls",
                f"tokens: {self.tokens:,} ({self.tokenizer})", f"cost: {cost}"]  # fmt: skip


def estimate_embeddings(
    model: str, documents: Sequence[str], queries: Sequence[str] = (), *, batch_size: int = 100
) -> EmbeddingEstimate:
    """The calls, tokens and cost of embedding ``documents`` (``batch_size`` a call, as
    ``OpenAIEmbedding`` batches them) and ``queries`` (one call each) with an OpenAI model.

    Example:
        >>> estimate_embeddings("text-embedding-3-small", ["a chunk"], ["a question?"]).calls
        2
    """
    count, tokenizer = _counter(model)
    tokens = sum(count(t) for t in documents) + sum(count(t) for t in queries)
    calls = -(-len(documents) // batch_size) + len(queries)
    price = EMBEDDING_PRICES.get(model)
    cost = None if price is None else tokens * price / 1e6
    return EmbeddingEstimate(model, len(documents) + len(queries), calls, tokens, cost, tokenizer)
