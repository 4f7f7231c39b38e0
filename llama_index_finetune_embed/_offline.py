"""The LLM half of the offline generator: prompt, local-LLM settings, stricter question filter.

Private; :func:`llama_index_finetune_embed.pseudo.generate_offline_pairs` is the entry point.
SmolLM2-135M is a very weak question writer. What made it usable at all (probes on 24 Lyft
10-K chunks, greedy, repetition penalty 1.2): the one-shot example as a previous chat turn
rather than inline in the prompt, the answer started with "What", the chunk cut to ~200 words,
and everything after the first "?" dropped. Even so most outputs are chat ("What would you do
if your company...?") or generic, so the filter keeps few: 76 questions from 334 Lyft chunks
(23%, 196 s on 2 CPU cores), 11 of 40 pydoc chunks with three prefixes (What/How/Which).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._io import text_hash
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

logger = logging.getLogger(__name__)

#: Prompt for the local LLM; the example is given as a previous chat turn (``OFFLINE_EXAMPLE``).
OFFLINE_QA_PROMPT_TMPL = "Text: {context_str}\n\nWrite one question about this text."

#: One-shot example: (user turn, assistant turn).
OFFLINE_EXAMPLE = (
    "Text: Lyft's revenue grew in 2021 as ride volume recovered after COVID-19 lockdowns ended "
    "in many cities.\n\nWrite one question about this text.",
    "Why did Lyft's revenue grow in 2021?",
)

#: The same prompt for any other LLM (no chat turns): the example is inline.
OFFLINE_QA_PROMPT_TMPL_INLINE = (
    f"{OFFLINE_EXAMPLE[0]}\nQuestion: {OFFLINE_EXAMPLE[1]}\n\n{OFFLINE_QA_PROMPT_TMPL}\nQuestion:"
)

#: Settings a LocalLLM gets for question writing (fields the caller set explicitly win).
LOCAL_QUESTION_SETTINGS: dict[str, Any] = {
    "assistant_prefix": "What",
    "examples": [OFFLINE_EXAMPLE],
    "stop": ["\n"],
    "max_new_tokens": 32,
    "repetition_penalty": 1.2,
}

_STOPWORDS = frozenset(
    """the a an and or of to in on for by with from as at is are was were be been being this
    that these those its it our we their they them which what how why who whom when where does
    do did has have had not can could may might will would should shall about into than other
    such any all more most some also there here been very much many""".split()
)
_PERSONAL = re.compile(r"\b(?:you|your|yours|yourself|i|me|my)\b", re.IGNORECASE)


def question_llm(llm: Any) -> Any:
    """The LLM to ask: ``"local"`` -> a LocalLLM set up for questions; a LocalLLM likewise."""
    from llama_index_finetune_embed.llms import LocalLLM

    if isinstance(llm, str):
        if llm != "local":
            raise ValueError(f"llm must be an LLM, 'local' or None, got {llm!r}")
        return LocalLLM(**LOCAL_QUESTION_SETTINGS)
    if isinstance(llm, LocalLLM):
        keep = llm.model_fields_set
        return llm.with_options(
            **{k: v for k, v in LOCAL_QUESTION_SETTINGS.items() if k not in keep}
        )
    return llm


def prompt_for(llm: Any) -> str:
    from llama_index_finetune_embed.llms import LocalLLM

    return OFFLINE_QA_PROMPT_TMPL if isinstance(llm, LocalLLM) else OFFLINE_QA_PROMPT_TMPL_INLINE


def clip_nodes(nodes: Sequence[BaseNode], max_words: int) -> list[BaseNode]:
    """Copies of text nodes cut to ``max_words`` words (what a small LLM can attend to)."""
    from llama_index.core.schema import TextNode

    clipped: list[BaseNode] = []
    for node in nodes:
        if isinstance(node, TextNode) and len(node.text.split()) > max_words:
            node = node.model_copy(update={"text": " ".join(node.text.split()[:max_words])})
        clipped.append(node)
    return clipped


def clean_question(text: str, context: str, *, min_shared: int = 2) -> str | None:
    """The question kept from one LLM output, or None when it fails the offline filter.

    Keeps the text up to the first "?"; requires 5-40 words, no "you/your/I" (the small model
    drifts into chat: "What is your plan...?"), and at least ``min_shared`` content words shared
    with the chunk (drops generic questions such as "What is the answer?").

    Example:
        >>> clean_question("What drove Lyft revenue in 2021? The answer...", "Lyft revenue in 2021")
        'What drove Lyft revenue in 2021?'
    """
    if "?" not in text:
        return None
    question = " ".join(text[: text.index("?") + 1].split())
    if not 5 <= len(question.split()) <= 40 or _PERSONAL.search(question):
        return None
    if len(content_words(question) & content_words(context)) < min_shared:
        return None
    return question


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOPWORDS}


def llm_pairs(
    nodes: Sequence[BaseNode],
    llm: Any,
    *,
    questions_per_chunk: int,
    prefixes: Sequence[str],
    context_words: int,
    num_workers: int | None,
    cache_path: str | os.PathLike[str] | None,
    show_progress: bool | None,
    seed: int,
    metadata_mode: str,
) -> EmbeddingQAFinetuneDataset:
    """LLM questions through the generation helper, then the offline filter; tagged ``"llm"``.

    A LocalLLM is asked once per prefix in ``prefixes``, each pass only about the chunks still
    without a usable question (greedy decoding would write the same text again for the same
    prefix); each pass has its own resume cache (``cache_path`` with ``.<prefix>`` added).
    """
    from llama_index_finetune_embed.llms import LocalLLM

    if context_words < 1:
        raise ValueError(f"context_words must be >= 1, got {context_words}")
    if not prefixes:
        raise ValueError("llm_prefixes must name at least one prefix, e.g. ('What',)")
    asker = question_llm(llm)
    local = isinstance(asker, LocalLLM)
    texts = {node.node_id: node.get_content() for node in nodes}
    kept: dict[str, list[str]] = {}
    stats: dict[str, float | int] = {}
    for i, prefix in enumerate(prefixes if local else prefixes[:1]):
        todo = [n for n in nodes if len(kept.get(n.node_id, [])) < questions_per_chunk]
        if not todo:
            break
        if local and asker.assistant_prefix != prefix:  # derived from the last: shares weights
            asker = asker.with_options(assistant_prefix=prefix)
        raw = _generate(todo, asker, local, questions_per_chunk, context_words, num_workers,
                        _pass_cache(cache_path, i, prefix), show_progress, seed)  # fmt: skip
        for key, value in raw.generation_stats.items():
            stats[key] = stats.get(key, 0) + value
        stats["llm_questions_written"] = stats.get("llm_questions_written", 0) + len(raw)
        for _, question, nid in raw.pairs():
            clean = clean_question(question, texts[nid])
            if clean and clean not in kept.get(nid, []):
                kept.setdefault(nid, []).append(clean)
    dataset = EmbeddingQAFinetuneDataset.from_nodes(
        nodes, kept, metadata_mode=metadata_mode, query_sources=dict.fromkeys(kept, "llm")
    )
    stats["llm_questions_kept"] = len(dataset)
    logger.info(
        "LLM questions: %d chunks of %d have one that passes the offline filter (%d of %d kept)",
        len(kept), len(texts), len(dataset), stats["llm_questions_written"],
    )  # fmt: skip
    return dataset.model_copy(update={"generation_stats": stats})


def _generate(
    nodes: Sequence[BaseNode],
    llm: Any,
    local: bool,
    n: int,
    context_words: int,
    num_workers: int | None,
    cache_path: Path | None,
    show_progress: bool | None,
    seed: int,
) -> EmbeddingQAFinetuneDataset:
    from llama_index_finetune_embed.generate import generate_qa_embedding_pairs

    with _quiet_unusable_outputs():
        return generate_qa_embedding_pairs(
            clip_nodes(nodes, context_words),
            llm=llm,
            qa_generate_prompt_tmpl=prompt_for(llm),
            num_questions_per_chunk=n,
            num_workers=num_workers or (llm.batch_size if local else 4),
            cache_path=cache_path,
            show_progress=show_progress,
            metadata_mode="none",  # the LLM sees the chunk text only; the corpus is rebuilt
            max_attempts=1 if local else 3,  # greedy decoding writes the same text again
            llm_id=_llm_id(llm) if local else None,
            seed=seed,
        )


def _llm_id(llm: Any) -> str:
    """Cache key of a LocalLLM: its settings that change what it writes."""
    settings = (llm.model_path, llm.assistant_prefix, llm.examples, llm.max_new_tokens,
                llm.repetition_penalty, llm.stop)  # fmt: skip
    return f"LocalLLM/{llm.metadata.model_name}/{text_hash(repr(settings))[:12]}"


def _pass_cache(cache_path: str | os.PathLike[str] | None, i: int, prefix: str) -> Path | None:
    if cache_path is None:
        return None
    path = Path(cache_path)
    if i == 0:
        return path
    tag = re.sub(r"[^A-Za-z0-9]+", "_", prefix).strip("_").lower() or f"pass{i}"
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


@contextmanager
def _quiet_unusable_outputs() -> Iterator[None]:
    """Hide the generation helper's per-chunk "no usable question" warnings (a small LLM fails
    on most chunks; one summary line is logged instead)."""

    def keep(record: logging.LogRecord) -> bool:
        return "no usable question" not in record.getMessage()

    gen_logger = logging.getLogger("llama_index_finetune_embed.generate")
    gen_logger.addFilter(keep)
    try:
        yield
    finally:
        gen_logger.removeFilter(keep)
