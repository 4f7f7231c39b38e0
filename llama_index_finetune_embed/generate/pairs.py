"""The public entry points: nodes + LLM -> (question, chunk) dataset, async and sync.

``generate_qa_embedding_pairs`` keeps llama-index-finetuning's name and main arguments; unlike the
reference it runs ``num_workers`` calls at once, retries transient failures with backoff, filters
what is not a question (:func:`parse_questions`), reports failed chunks instead of dropping them,
counts tokens, and resumes from an append-only cache keyed by node id and text hash. The keyword
options are the fields of :class:`GenerationSettings`, defined there once; the sync function is
the async one run to its end, so both have one signature.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.generate.run import GenerationRun, run_sync
from llama_index_finetune_embed.generate.settings import (
    GenerationSettings,
    OnFailure,
    with_settings_signature,
)

if TYPE_CHECKING:
    from llama_index.core.llms import LLM
    from llama_index.core.schema import BaseNode

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "agenerate_qa_embedding_pairs",
    "generate_qa_embedding_pairs",
    "generate_question_context_pairs",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QA_GENERATE_PROMPT_TMPL = """\
Context information is below.

---------------------
{context_str}
---------------------

Given the context information and not prior knowledge, generate only questions based on the \
context above.

You are a Teacher/Professor. Your task is to set up {num_questions_per_chunk} questions for an \
upcoming quiz/examination. The questions should be diverse in nature across the document. \
Restrict the questions to the context information provided. Write one question per line, \
numbered, and nothing else: no introduction and no answers.
"""


@with_settings_signature(GenerationSettings)
async def agenerate_qa_embedding_pairs(
    nodes: Sequence[BaseNode],
    llm: LLM | None = None,
    qa_generate_prompt_tmpl: str = DEFAULT_QA_GENERATE_PROMPT_TMPL,
    num_questions_per_chunk: int = 2,
    retry_limit: int | None = None,
    on_failure: OnFailure = "continue",
    save_every: int | None = None,
    output_path: str | os.PathLike[str] | None = None,
    verbose: bool | None = None,
    **options: Any,
) -> EmbeddingQAFinetuneDataset:
    """Return a dataset of LLM-written questions for each node (one LLM call per chunk).

    Calls ``llm.acomplete`` for up to ``num_workers`` chunks at once. Two forms, one signature:
    await ``agenerate_qa_embedding_pairs`` in async code; ``generate_qa_embedding_pairs`` works
    from plain scripts and from inside a running event loop (a notebook): there the work runs
    in a worker thread with its own loop, leaving yours untouched.

    Args:
        nodes: The chunks; their ids become the corpus ids, and must be unique.
        llm: Any LlamaIndex LLM (default ``Settings.llm``). One that retries on its own
            (``max_retries``, 3 for ``OpenAI``) is called through a copy with ``max_retries=0``,
            so every attempt is paced and counted here once; your object is left as it is.
        qa_generate_prompt_tmpl: Prompt with ``{context_str}`` and ``{num_questions_per_chunk}``.
        num_questions_per_chunk: Questions kept per chunk (at most; fewer if the LLM wrote fewer).
        retry_limit, on_failure, save_every, output_path, verbose: llama-index-finetuning's
            arguments, in its order; fields of :class:`GenerationSettings`, documented there
            (``retry_limit`` is ``max_attempts``; ``on_failure="fail"`` is ``"raise"``;
            ``save_every`` is accepted and warns: ``cache_path`` saves each chunk instead).
        **options: The keyword-only fields of :class:`GenerationSettings` (``num_workers=128``,
            ``cache_path``, ``show_progress``, ``metadata_mode="embed"``, ``max_attempts=5``,
            ``backoff_base``, ``backoff_max``, ``timeout``, ``source="llm"``, ``llm_id``,
            ``seed``), documented there; ``inspect.signature`` and ``help()`` list them with
            their defaults.

    Returns:
        The dataset: corpus = all nodes' text, query ids stable across reruns,
        ``failed_chunks`` and ``generation_stats`` (calls, retries, tokens, seconds) filled in.

    Raises:
        ValueError: bad arguments, or a ``cache_path`` written for other settings or nodes.
        TypeError: ``nodes`` that are not LlamaIndex nodes, or an unknown keyword.
        RuntimeError: a fatal LLM error, or a failed chunk with ``on_failure="raise"``.

    Example:
        >>> from llama_index.llms.openai import OpenAI
        >>> llm = OpenAI(model="gpt-4o-mini")
        >>> train = generate_qa_embedding_pairs(train_nodes, llm=llm, cache_path="train.jsonl")
        ... # doctest: +SKIP
        >>> train.generation_stats["calls"], train.failed_chunks  # doctest: +SKIP
        (334, {})
        >>> val = await agenerate_qa_embedding_pairs(val_nodes, llm)  # doctest: +SKIP
    """
    settings = GenerationSettings(
        retry_limit=retry_limit, on_failure=on_failure, save_every=save_every,
        output_path=output_path, verbose=verbose, **options,
    )  # fmt: skip
    run = GenerationRun(nodes, llm, qa_generate_prompt_tmpl, num_questions_per_chunk, settings)
    return await run.execute()


def _blocking(afunc: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """The sync form of ``afunc``: same signature and docs, runs the coroutine to its end."""

    @functools.wraps(afunc)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_sync(afunc(*args, **kwargs))  # type: ignore[arg-type]

    wrapper.__name__ = wrapper.__qualname__ = afunc.__name__.removeprefix("a")
    return wrapper


#: Sync form of :func:`agenerate_qa_embedding_pairs` (same arguments, same result).
generate_qa_embedding_pairs = _blocking(agenerate_qa_embedding_pairs)

#: llama-index-core's alias (``llama_index.core.evaluation.generate_question_context_pairs``,
#: removed in core 0.14.21): the same function.
generate_question_context_pairs = generate_qa_embedding_pairs
