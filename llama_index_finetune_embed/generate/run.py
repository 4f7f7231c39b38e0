"""One generation run: bounded async LLM calls, retries with backoff, progress, resume cache.

:class:`GenerationRun` does the work behind
:func:`~llama_index_finetune_embed.generate.agenerate_qa_embedding_pairs`; failed chunks come back
by value (``dataset.failed_chunks``, ``generation_stats["unusable_chunks"]``) and are logged one
per chunk, except chunks the LLM wrote nothing usable for when ``warn_unusable`` is off (a weak
local LLM fails on most chunks). :func:`run_sync` runs a coroutine from sync code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index_finetune_embed._io import text_hash
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.generate._passages import asked_passages
from llama_index_finetune_embed.generate.cache import ResumeCache, cache_fingerprint
from llama_index_finetune_embed.generate.calls import (
    describe_error,
    error_kind,
    is_congestion,
    rate_limits,
    response_headers,
    retry_after_seconds,
    token_usage,
    without_retries,
)
from llama_index_finetune_embed.generate.llms import LocalLLM
from llama_index_finetune_embed.generate.pacing import Pacer
from llama_index_finetune_embed.generate.questions import parse_questions
from llama_index_finetune_embed.generate.settings import GenerationSettings, check_inputs

if TYPE_CHECKING:
    from llama_index.core.llms import LLM
    from llama_index.core.schema import BaseNode

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_RETRY_AFTER = 60.0
_START_IN_FLIGHT = 32  # calls in flight at the start; the pacer grows it while the server keeps up
_UNUSABLE = "no usable question in the output"
_BUDGET = "budget spent"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from sync code, also inside a running event loop (a notebook).

    There it runs in a worker thread with its own loop, leaving the caller's loop untouched.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Inside a running loop (Jupyter): a loop of our own in a worker thread, never nest_asyncio.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qa-generate") as pool:
        return pool.submit(asyncio.run, coro).result()


class GenerationRun:
    """One generation run: inputs and settings checked (and the cache opened) at construction.

    Example:
        >>> run = GenerationRun(nodes, llm, "{context_str}", 2, GenerationSettings())
        ... # doctest: +SKIP
        >>> dataset = asyncio.run(run.execute())  # doctest: +SKIP
    """

    def __init__(
        self,
        nodes: Sequence[BaseNode],
        llm: LLM | None,
        template: str,
        num_questions: int,
        settings: GenerationSettings,
        *,
        warn_unusable: bool = True,
    ) -> None:
        check_inputs(nodes, template, num_questions)
        if llm is None:
            from llama_index.core import Settings

            llm = Settings.llm
        self.llm = _one_request_per_call(llm)
        self.nodes, self.template, self.n = list(nodes), template, num_questions
        self.settings, self.warn_unusable = settings, warn_unusable
        self.mode = settings.mode
        self.texts = {n.node_id: n.get_content(metadata_mode=self.mode) for n in self.nodes}
        self.rng = random.Random(settings.seed)
        self.progress = settings.progress(logger)
        model = settings.llm_id or cache_model_id(llm)
        fingerprint = cache_fingerprint(
            template, model, num_questions, self.mode, settings.passage_words
        )
        # Opened (and checked) here so a wrong cache fails before any call is made.
        path = settings.cache_path
        self.cache = ResumeCache.open(path, fingerprint, self.texts) if path else None

    async def execute(self) -> EmbeddingQAFinetuneDataset:
        start = time.monotonic()
        done = dict(self.cache.done) if self.cache else {}
        self.questions: dict[str, list[str]] = dict(done)
        self.positions = dict(self.cache.positions) if self.cache else {}
        self.failed: dict[str, str] = {}
        self.left: set[str] = set()  # chunks not asked because the budget was spent
        self.stats: dict[str, float | int] = dict.fromkeys(
            ("calls", "retries", "errors", "rate_limited", "unusable_outputs", "unusable_chunks",
             "prompt_tokens", "completion_tokens", "calls_without_usage"), 0,
        )  # fmt: skip
        settings = self.settings
        # a local LLM has no rate limit to find and batches the calls in flight: all at once
        local = isinstance(self.llm, LocalLLM)
        self.pacer = Pacer(
            max_in_flight=settings.num_workers,
            start_in_flight=settings.num_workers if local else min(settings.num_workers,
                                                                   _START_IN_FLIGHT),
            max_rpm=settings.max_rpm,
            max_tpm=settings.max_tpm,
        )
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
            while queue and not self._budget_spent():
                nid = queue.pop()
                await self._one_chunk(nid)
                self.bar.update(nid not in self.left)
                self.bar.set_postfix_str(self._postfix(), refresh=False)

        workers = min(self.settings.num_workers, len(pending))  # the pacer admits their calls
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            with _logs_above_bar(self.progress):
                await asyncio.gather(*tasks)
            self.left.update(queue)  # the budget stopped the workers before these
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self.bar.close()

    async def _one_chunk(self, nid: str) -> None:
        """Every asked passage of one chunk (the whole chunk when it is short), then the chunk
        recorded: done with the questions written, failed if none, left if the budget ran out."""
        found: list[str] = []
        spots: list[dict[str, int]] = []
        reason, attempts = "no attempt made", 0
        settings = self.settings
        asked = asked_passages(self.texts[nid], nid, self.n, settings.passage_words, settings.seed)
        for spot, k in asked:
            passage = self.texts[nid][spot["start"] : spot["end"]]
            questions, reason, made = await self._ask(passage, k)
            attempts += made  # over every asked passage of the chunk
            if reason == _BUDGET:
                self.left.add(nid)  # neither failed nor cached: a rerun asks for it
                return
            for question in questions:
                if question not in found:
                    found.append(question)
                    spots.append(spot)
        if found:
            self.questions[nid], self.positions[nid] = found, spots
            if self.cache:
                source = self.settings.source
                self.cache.append(nid, text_hash(self.texts[nid]), found, source, attempts, spots)
            return
        unusable = reason.startswith(_UNUSABLE)
        self.stats["unusable_chunks"] += unusable
        reason = f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        if self.settings.on_failure == "raise":
            raise RuntimeError(
                f"question generation failed for chunk {nid!r}: {reason}. Chunks finished so far "
                "are in cache_path (if set); pass on_failure='continue' to record failures instead"
            )
        if self.warn_unusable or not unusable:
            logger.warning("chunk %r failed: %s", nid, reason)
        self.failed[nid] = reason

    async def _ask(self, context: str, k: int) -> tuple[list[str], str, int]:
        """One passage asked for ``k`` questions, retried: (questions, why not, attempts made)."""
        prompt = self.template.format(context_str=context, num_questions_per_chunk=k)
        reason, attempts = "no attempt made", self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            questions, reason, retry_after = await self._attempt(prompt, context, k)
            if questions or reason == _BUDGET:
                return questions, reason, attempt
            if retry_after is None or attempt == attempts:
                break
            self.stats["retries"] += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        return [], reason, attempt

    async def _attempt(
        self, prompt: str, context: str, k: int
    ) -> tuple[list[str], str, float | None]:
        """One call: (questions, why not, seconds to wait before a retry or None for no retry)."""
        ticket = await self.pacer.acquire(tokens=len(prompt) / 4)  # ~4 characters a token
        if self._budget_spent():
            self.pacer.release("cancelled", ticket)
            return [], _BUDGET, None
        self.stats["calls"] += 1
        try:
            call, timeout = self.llm.acomplete(prompt), self.settings.timeout
            response = await (asyncio.wait_for(call, timeout) if timeout else call)
        except Exception as exc:  # noqa: BLE001 - classified below; CancelledError passes
            self.stats["errors"] += 1
            return [], describe_error(exc), self._failed(ticket, exc)
        except BaseException:
            self.pacer.release("error", ticket)
            raise
        self.pacer.release("ok", ticket, tokens=self._count_usage(response))
        text = getattr(response, "text", None) or ""
        questions = parse_questions(text, context, k)
        if not questions:
            self.stats["unusable_outputs"] += 1
            return [], f"{_UNUSABLE} {text[:80]!r}", 0.0
        return questions, "", None

    def _failed(self, ticket: int, exc: Exception) -> float | None:
        """A failed call: the pacer told (a 429 slows every call down, a timeout or overload
        shrinks the window), then retry-after seconds (0 = just back off) for a retryable error,
        None if not; or raise."""
        kind, retry_after = error_kind(exc), retry_after_seconds(exc)
        refused = kind == "rate_limit"
        self.stats["rate_limited"] += refused
        outcome = "refused" if refused else "timeout" if is_congestion(exc) else "error"
        limits = rate_limits(response_headers(exc))
        self.pacer.release(outcome, ticket, retry_after=retry_after, limits=limits)
        if kind == "fatal":
            raise RuntimeError(
                f"stopping generation: the LLM call failed with {describe_error(exc)}; this will "
                "fail for every chunk (check the API key, model name and api_base)"
            ) from exc
        if kind == "chunk":
            return None
        return retry_after

    def _budget_spent(self) -> bool:
        s, settings = self.stats, self.settings
        if settings.max_calls is not None and s["calls"] >= settings.max_calls:
            return True
        tokens = s["prompt_tokens"] + s["completion_tokens"]
        return settings.budget_tokens is not None and tokens >= settings.budget_tokens

    def _delay(self, attempt: int, retry_after: float) -> float:
        base, cap = self.settings.backoff_base, self.settings.backoff_max
        backoff = min(cap, base * 2 ** (attempt - 1))
        jittered = backoff / 2 + self.rng.uniform(0, backoff / 2)  # "equal jitter"
        return max(jittered, min(retry_after, _MAX_RETRY_AFTER))

    def _count_usage(self, response: Any) -> int | None:
        usage = token_usage(response)
        if usage is None:
            self.stats["calls_without_usage"] += 1
            return None
        self.stats["prompt_tokens"] += usage[0]
        self.stats["completion_tokens"] += usage[1]
        return usage[0] + usage[1]

    def _postfix(self) -> str:
        s, pacer = self.stats, self.pacer
        tokens = s["prompt_tokens"] + s["completion_tokens"]
        return (
            f"in flight={pacer.in_flight} rate={pacer.accepted_rps():.1f}/s "
            f"429s={s['rate_limited']} retries={s['retries']} failed={len(self.failed)} "
            f"tok={tokens}"
        )

    def _finish(self, cached: int, seconds: float) -> EmbeddingQAFinetuneDataset:
        order = list(self.texts)
        questions = {nid: self.questions[nid] for nid in order if nid in self.questions}
        dataset = EmbeddingQAFinetuneDataset.from_nodes(
            self.nodes, questions, metadata_mode=self.mode,
            query_sources=dict.fromkeys(questions, self.settings.source),
            positions=self.positions,
        )  # fmt: skip
        self.stats.update(
            chunks=len(order), cached_chunks=cached, failed_chunks=len(self.failed),
            chunks_left=len(self.left), questions=len(dataset.queries), seconds=round(seconds, 3),
        )  # fmt: skip
        failed = {nid: self.failed[nid] for nid in order if nid in self.failed}
        dataset = dataset.model_copy(
            update={"failed_chunks": failed, "generation_stats": dict(self.stats)}
        )
        logger.info("question generation finished: %s", _summary(self.stats))
        if self.left:
            budget = self.settings
            logger.warning(
                "stopped at the budget (max_calls=%s, budget_tokens=%s): %d chunks not asked yet%s",
                budget.max_calls, budget.budget_tokens, len(self.left),
                "; rerun with the same cache_path to ask only for them" if self.cache else "",
            )  # fmt: skip
        if self.settings.output_path is not None:
            dataset.save_json(self.settings.output_path)
        return dataset


# -- helpers ---------------------------------------------------------------------------------


def cache_model_id(llm: Any) -> str:
    """The model id a resume cache records: the LLM's own ``cache_key`` (e.g. a LocalLLM's,
    which covers its settings), else its class and ``metadata.model_name``."""
    key = getattr(llm, "cache_key", None)
    if isinstance(key, str):
        return key
    model = getattr(getattr(llm, "metadata", None), "model_name", None) or "unknown"
    return f"{type(llm).__name__}/{model}"


def _one_request_per_call(llm: Any) -> Any:
    """The LLM the run calls: a copy without client retries where ``llm`` has them (an SDK that
    retries a 429 itself hides it from the pacer), else ``llm``; the caller's object is kept."""
    retries = getattr(llm, "max_retries", 0)
    if not isinstance(retries, int) or retries <= 0:
        return llm
    copy = without_retries(llm)
    if copy is not None:
        logger.debug(
            "calling a copy of %s with max_retries=0 (yours keeps max_retries=%d): every "
            "attempt is paced and counted here", type(llm).__name__, retries,
        )  # fmt: skip
        return copy
    logger.warning(
        "%s has max_retries=%d and cannot be copied without it: each attempt counted here may "
        "make up to %d HTTP calls, and 429s it retries itself are hidden from the rate limiting. "
        "Build the LLM with max_retries=0 to let max_attempts count every call.",
        type(llm).__name__, retries, retries + 1,
    )  # fmt: skip
    return llm


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
        f"{stats['calls']} LLM calls ({stats['retries']} retries, "
        f"{stats['rate_limited']} refused with 429), "
        f"{stats['prompt_tokens']} prompt + {stats['completion_tokens']} completion tokens "
        f"in {stats['seconds']:.1f} s"
    )
