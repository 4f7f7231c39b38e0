"""The LLM half of the offline generator: prompt, local-LLM settings, stricter question filter.

Private; :func:`llama_index_finetune_embed.pseudo.generate_offline_pairs` is the entry point.
SmolLM2-135M is a very weak question writer. What made it usable here (measured on 24 Lyft
chunks, greedy, repetition penalty 1.2): the one-shot example as a previous chat turn (6/24
outputs pass the filter) rather than inline in the prompt (1-2/24), the answer started with
"What", the chunk cut to about 300 tokens, and everything after the first "?" dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

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
