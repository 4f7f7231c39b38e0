"""Nodes + LLM -> (question, chunk) dataset: bounded async calls, retries, parsing, resume cache.

``generate_qa_embedding_pairs`` keeps llama-index-finetuning's name and main arguments; unlike the
reference it runs ``num_workers`` calls at once, retries transient failures with backoff, filters
what is not a question (:func:`parse_questions`), reports failed chunks instead of dropping them,
counts tokens, and resumes from an append-only cache keyed by node id and text hash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from llama_index_finetune_embed._gen_cache import ResumeCache, cache_fingerprint
from llama_index_finetune_embed._io import text_hash
from llama_index_finetune_embed._llm_calls import (
    describe_error,
    error_kind,
    retry_after_seconds,
    token_usage,
)
from llama_index_finetune_embed._questions import parse_questions
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

if TYPE_CHECKING:
    from llama_index.core.llms import LLM
    from llama_index.core.schema import BaseNode

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "agenerate_qa_embedding_pairs",
    "generate_qa_embedding_pairs",
    "parse_questions",
]

logger = logging.getLogger(__name__)

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

OnFailure = Literal["continue", "raise"]
_MAX_RETRY_AFTER = 60.0


async def agenerate_qa_embedding_pairs(
    nodes: Sequence[BaseNode],
    llm: LLM | None = None,
    qa_generate_prompt_tmpl: str = DEFAULT_QA_GENERATE_PROMPT_TMPL,
    num_questions_per_chunk: int = 2,
    **options: Any,
) -> EmbeddingQAFinetuneDataset:
    """Async form of :func:`generate_qa_embedding_pairs` (same arguments); await it in async code.

    Example:
        >>> ds = await agenerate_qa_embedding_pairs(nodes, llm, num_workers=8)  # doctest: +SKIP
    """
    run = _Run.create(nodes, llm, qa_generate_prompt_tmpl, num_questions_per_chunk, **options)
    return await run.execute()


def generate_qa_embedding_pairs(
    nodes: Sequence[BaseNode],
    llm: LLM | None = None,
    qa_generate_prompt_tmpl: str = DEFAULT_QA_GENERATE_PROMPT_TMPL,
    num_questions_per_chunk: int = 2,
    *,
    num_workers: int = 16,
    cache_path: str | os.PathLike[str] | None = None,
    show_progress: bool | None = None,
    metadata_mode: str = "embed",
    max_attempts: int = 5,
    backoff_base: float = 1.0,
    backoff_max: float = 30.0,
    timeout: float | None = None,
    on_failure: OnFailure = "continue",
    source: str = "llm",
    llm_id: str | None = None,
    seed: int | None = None,
    output_path: str | os.PathLike[str] | None = None,
    verbose: bool | None = None,
) -> EmbeddingQAFinetuneDataset:
    """Return a dataset of LLM-written questions for each node (one LLM call per chunk).

    Calls ``llm.acomplete`` for up to ``num_workers`` chunks at once. Works from plain scripts
    and from inside a running event loop (a notebook): there the work runs in a worker thread
    with its own loop, leaving yours untouched (in async code prefer
    :func:`agenerate_qa_embedding_pairs`).

    Args:
        nodes: The chunks; their ids become the corpus ids, and must be unique.
        llm: Any LlamaIndex LLM (default ``Settings.llm``). OpenAI clients retry on their own:
            build them with ``max_retries=0`` so every attempt is counted here once.
        qa_generate_prompt_tmpl: Prompt with ``{context_str}`` and ``{num_questions_per_chunk}``.
        num_questions_per_chunk: Questions kept per chunk (at most; fewer if the LLM wrote fewer).
        num_workers: LLM calls in flight at once.
        cache_path: Append-only JSONL resume cache. Each finished chunk is written and fsync'd
            as it finishes; a rerun skips them. A cache belongs to one prompt, model,
            ``num_questions_per_chunk``, metadata mode and set of nodes: anything else is refused
            with a ``ValueError``. Failed chunks are not cached, so a rerun retries them.
        show_progress: tqdm bar with calls, retries and tokens (default: on when stderr is a
            terminal).
        metadata_mode: ``MetadataMode`` used to render the text given to the LLM and stored in
            the corpus; default ``"embed"``, what ``VectorStoreIndex`` embeds.
        max_attempts: Calls per chunk (first try included) before the chunk counts as failed.
            Transient errors (429, 5xx, timeouts, connection errors) and unusable output (no
            question in it) are retried with exponential backoff and jitter, honouring
            ``Retry-After`` (a 429 pauses every worker).
        backoff_base: Seconds before the first retry (doubles each time, jittered).
        backoff_max: Cap on one backoff.
        timeout: Seconds before one call is abandoned and retried (``None``: the LLM's own).
        on_failure: ``"continue"`` records failed chunks in ``dataset.failed_chunks`` (id ->
            reason); ``"raise"`` stops at the first failed chunk with ``RuntimeError``. HTTP
            401/403/404 and programming errors always stop the run at once.
        source: Tag written to ``dataset.query_sources`` for every query.
        llm_id: Model id recorded in the cache (default: LLM class and ``metadata.model_name``).
        seed: Seed of the backoff jitter.
        output_path: Also save the dataset JSON here (llama-index-finetuning's argument; unlike
            there it is never read back: resuming is ``cache_path``'s job).
        verbose: llama-index-finetuning's name for ``show_progress``.

    Returns:
        The dataset: corpus = all nodes' text, query ids stable across reruns,
        ``failed_chunks`` and ``generation_stats`` (calls, retries, tokens, seconds) filled in.

    Raises:
        ValueError: bad arguments, or a ``cache_path`` written for other settings or nodes.
        RuntimeError: a fatal LLM error, or a failed chunk with ``on_failure="raise"``.

    Example:
        >>> from llama_index.llms.openai import OpenAI
        >>> llm = OpenAI(model="gpt-4o-mini", max_retries=0)
        >>> train = generate_qa_embedding_pairs(train_nodes, llm=llm, cache_path="train.jsonl")
        ... # doctest: +SKIP
        >>> train.generation_stats["calls"], train.failed_chunks  # doctest: +SKIP
        (334, {})
    """
    options = dict(locals())
    for name in ("nodes", "llm", "qa_generate_prompt_tmpl", "num_questions_per_chunk"):
        options.pop(name)
    run = _Run.create(nodes, llm, qa_generate_prompt_tmpl, num_questions_per_chunk, **options)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run.execute())
    # Inside a running loop (Jupyter): a loop of our own in a worker thread, never nest_asyncio.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qa-generate") as pool:
        return pool.submit(asyncio.run, run.execute()).result()


class _Run:
    """One generation run: settings checked at entry, then :meth:`execute` in an event loop."""

    @classmethod
    def create(
        cls,
        nodes: Sequence[BaseNode],
        llm: LLM | None,
        template: str,
        num_questions: int,
        *,
        num_workers: int = 16,
        cache_path: str | os.PathLike[str] | None = None,
        show_progress: bool | None = None,
        metadata_mode: str = "embed",
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float | None = None,
        on_failure: OnFailure = "continue",
        source: str = "llm",
        llm_id: str | None = None,
        seed: int | None = None,
        output_path: str | os.PathLike[str] | None = None,
        verbose: bool | None = None,
    ) -> _Run:
        from llama_index.core.schema import MetadataMode

        _check_settings(nodes, template, num_questions, num_workers, max_attempts, on_failure)
        if backoff_base < 0 or backoff_max < 0 or (timeout is not None and timeout <= 0):
            raise ValueError("backoff_base/backoff_max must be >= 0 and timeout > 0 (or None)")
        try:
            mode = MetadataMode(metadata_mode)
        except ValueError:
            choices = [m.value for m in MetadataMode]
            msg = f"metadata_mode must be one of {choices}, got {metadata_mode!r}"
            raise ValueError(msg) from None
        if llm is None:
            from llama_index.core import Settings

            llm = Settings.llm
        _warn_client_retries(llm)
        self = cls()
        self.nodes, self.llm, self.template, self.n = list(nodes), llm, template, num_questions
        self.texts = {node.node_id: node.get_content(metadata_mode=mode) for node in self.nodes}
        self.mode, self.workers, self.max_attempts = mode.value, num_workers, max_attempts
        self.backoff = (backoff_base, backoff_max)
        self.timeout, self.on_failure, self.source = timeout, on_failure, source
        self.rng = random.Random(seed)
        self.output_path = output_path
        self.progress = show_progress if show_progress is not None else verbose
        if self.progress is None:
            self.progress = sys.stderr.isatty()
        fingerprint = cache_fingerprint(template, llm_id or _llm_id(llm), num_questions, mode.value)
        # Opened (and checked) here so a wrong cache fails before any call is made.
        self.cache = ResumeCache.open(cache_path, fingerprint, self.texts) if cache_path else None
        return self

    async def execute(self) -> EmbeddingQAFinetuneDataset:
        start = time.monotonic()
        done = dict(self.cache.done) if self.cache else {}
        self.questions: dict[str, list[str]] = dict(done)
        self.failed: dict[str, str] = {}
        self.stats: dict[str, float | int] = dict.fromkeys(
            ("calls", "retries", "errors", "unusable_outputs", "prompt_tokens",
             "completion_tokens", "calls_without_usage"), 0,
        )  # fmt: skip
        self.pause_until = 0.0
        pending = []
        for nid, text in self.texts.items():
            if nid in done:
                continue
            if text.strip():
                pending.append(nid)
            else:
                self.failed[nid] = "empty text: nothing to ask about"
        try:
            await self._run_all(pending, initial=len(done))
        finally:
            if self.cache:
                self.cache.close()
        return self._finish(len(done), time.monotonic() - start)

    async def _run_all(self, pending: list[str], *, initial: int) -> None:
        queue = list(reversed(pending))
        self.bar = _progress_bar(len(self.texts), initial, self.progress)

        async def worker() -> None:
            while queue:
                nid = queue.pop()
                await self._one_chunk(nid)
                self.bar.update(1)
                self.bar.set_postfix_str(self._postfix(), refresh=False)

        tasks = [asyncio.create_task(worker()) for _ in range(min(self.workers, len(pending)))]
        try:
            with _logs_above_bar(self.progress):
                await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self.bar.close()

    async def _one_chunk(self, nid: str) -> None:
        context = self.texts[nid]
        prompt = self.template.format(context_str=context, num_questions_per_chunk=self.n)
        reason = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            questions, reason, retry_after = await self._attempt(prompt, context)
            if questions:
                self.questions[nid] = questions
                if self.cache:
                    self.cache.append(nid, text_hash(context), questions, self.source, attempt)
                return
            if retry_after is None or attempt == self.max_attempts:
                break
            self.stats["retries"] += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        reason = f"{reason} (after {attempt} attempt{'s' if attempt > 1 else ''})"
        if self.on_failure == "raise":
            raise RuntimeError(
                f"question generation failed for chunk {nid!r}: {reason}. Chunks finished so far "
                "are in cache_path (if set); pass on_failure='continue' to record failures instead"
            )
        logger.warning("chunk %r failed: %s", nid, reason)
        self.failed[nid] = reason

    async def _attempt(self, prompt: str, context: str) -> tuple[list[str], str, float | None]:
        """One call: (questions, why not, seconds to wait before a retry or None for no retry)."""
        wait = self.pause_until - time.monotonic()
        if wait > 0:  # a 429 elsewhere asked everyone to slow down
            await asyncio.sleep(wait)
        self.stats["calls"] += 1
        try:
            call = self.llm.acomplete(prompt)
            response = await (asyncio.wait_for(call, self.timeout) if self.timeout else call)
        except Exception as exc:  # noqa: BLE001 - classified below; CancelledError passes
            self.stats["errors"] += 1
            return [], describe_error(exc), self._classify(exc)
        self._count_usage(response)
        text = getattr(response, "text", None) or ""
        questions = parse_questions(text, context, self.n)
        if not questions:
            self.stats["unusable_outputs"] += 1
            return [], f"no usable question in the output {text[:80]!r}", 0.0
        return questions, "", None

    def _classify(self, exc: Exception) -> float | None:
        """Retry-after seconds (0 = just back off) for a retryable error, None if not; or raise."""
        kind = error_kind(exc)
        if kind == "fatal":
            raise RuntimeError(
                f"stopping generation: the LLM call failed with {describe_error(exc)}; this will "
                "fail for every chunk (check the API key, model name and api_base)"
            ) from exc
        if kind == "chunk":
            return None
        retry_after = retry_after_seconds(exc)
        if kind == "rate_limit":
            pause = max(retry_after, self.backoff[0])
            self.pause_until = max(self.pause_until, time.monotonic() + pause)
        return retry_after

    def _delay(self, attempt: int, retry_after: float) -> float:
        base, cap = self.backoff
        backoff = min(cap, base * 2 ** (attempt - 1))
        jittered = backoff / 2 + self.rng.uniform(0, backoff / 2)  # "equal jitter"
        return max(jittered, min(retry_after, _MAX_RETRY_AFTER))

    def _count_usage(self, response: Any) -> None:
        usage = token_usage(response)
        if usage is None:
            self.stats["calls_without_usage"] += 1
            return
        self.stats["prompt_tokens"] += usage[0]
        self.stats["completion_tokens"] += usage[1]

    def _postfix(self) -> str:
        s = self.stats
        tokens = s["prompt_tokens"] + s["completion_tokens"]
        return f"calls={s['calls']} retries={s['retries']} failed={len(self.failed)} tok={tokens}"

    def _finish(self, cached: int, seconds: float) -> EmbeddingQAFinetuneDataset:
        order = list(self.texts)
        questions = {nid: self.questions[nid] for nid in order if nid in self.questions}
        dataset = EmbeddingQAFinetuneDataset.from_nodes(
            self.nodes, questions, metadata_mode=self.mode,
            query_sources=dict.fromkeys(questions, self.source),
        )  # fmt: skip
        self.stats.update(
            chunks=len(order), cached_chunks=cached, failed_chunks=len(self.failed),
            questions=len(dataset.queries), seconds=round(seconds, 3),
        )  # fmt: skip
        failed = {nid: self.failed[nid] for nid in order if nid in self.failed}
        dataset = dataset.model_copy(
            update={"failed_chunks": failed, "generation_stats": dict(self.stats)}
        )
        logger.info("question generation finished: %s", _summary(self.stats))
        if self.output_path is not None:
            dataset.save_json(self.output_path)
        return dataset


# -- helpers ---------------------------------------------------------------------------------


def _check_settings(
    nodes: Any, template: Any, n: int, workers: int, attempts: int, on_failure: str
) -> None:
    from llama_index.core.schema import BaseNode

    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise TypeError(f"nodes must be a sequence of BaseNode, got {type(nodes).__name__}")
    bad = next((x for x in nodes if not isinstance(x, BaseNode)), None)
    if bad is not None:
        raise TypeError(f"nodes must hold BaseNode objects, found {type(bad).__name__}")
    ids = [node.node_id for node in nodes]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"node ids must be unique (they become corpus ids); {dup!r} repeats")
    if not isinstance(template, str) or "{context_str}" not in template:
        raise ValueError("qa_generate_prompt_tmpl must be a str containing '{context_str}'")
    try:
        template.format(context_str="", num_questions_per_chunk=n)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"qa_generate_prompt_tmpl cannot be formatted ({type(exc).__name__}: {exc}); its only "
            "fields are {context_str} and {num_questions_per_chunk}: write literal braces as {{ }}"
        ) from None
    for name, value in (("num_questions_per_chunk", n), ("num_workers", workers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"max_attempts must be a positive int, got {attempts!r}")
    if on_failure not in ("continue", "raise"):
        raise ValueError(f"on_failure must be 'continue' or 'raise', got {on_failure!r}")


def _llm_id(llm: Any) -> str:
    model = getattr(getattr(llm, "metadata", None), "model_name", None) or "unknown"
    return f"{type(llm).__name__}/{model}"


def _warn_client_retries(llm: Any) -> None:
    retries = getattr(llm, "max_retries", 0)
    if isinstance(retries, int) and retries > 0:
        logger.warning(
            "%s has max_retries=%d: each attempt counted here may make up to %d HTTP calls. "
            "Build the LLM with max_retries=0 to let max_attempts count every call.",
            type(llm).__name__, retries, retries + 1,
        )  # fmt: skip


def _logs_above_bar(enabled: bool) -> Any:
    """While the bar is shown, console log lines go through ``tqdm.write`` (no torn bar)."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="Generating", unit="chunk")


def _summary(stats: dict[str, float | int]) -> str:
    return (
        f"{stats['questions']} questions for {stats['chunks']} chunks "
        f"({stats['cached_chunks']} from cache, {stats['failed_chunks']} failed); "
        f"{stats['calls']} LLM calls ({stats['retries']} retries), "
        f"{stats['prompt_tokens']} prompt + {stats['completion_tokens']} completion tokens "
        f"in {stats['seconds']:.1f} s"
    )
