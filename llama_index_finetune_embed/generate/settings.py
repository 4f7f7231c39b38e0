"""The options of question generation: one validated settings object, checked at construction.

:class:`GenerationSettings` is the one place the keyword options of
:func:`~llama_index_finetune_embed.generate.generate_qa_embedding_pairs` are defined (names, types,
defaults, limits); :func:`with_settings_signature` shows them as the public functions' keywords
(the offline generator's settings use it too).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from llama_index_finetune_embed._compat import warn_unused
from llama_index_finetune_embed._io import progress_enabled
from llama_index_finetune_embed.generate._passages import PASSAGE_WORDS

__all__ = [
    "GenerationSettings",
    "OnFailure",
    "check_inputs",
    "with_settings_signature",
]

OnFailure = Literal["continue", "raise", "fail"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How a generation run calls the LLM, retries, caches and reports (every field optional).

    Args:
        passage_words: A chunk longer than about 1.5x this many words is shown to the LLM
            passage by passage (passages of about this many words, cut at sentence ends), and
            its ``num_questions_per_chunk`` questions are spread over the passages: one call per
            asked passage, each asking for that passage's share; with fewer questions than
            passages, the asked passages are evenly spaced from a random start (seeded by
            ``seed`` and the node id), so over a corpus every passage is asked as often. The
            positive of each question stays the whole chunk; where it came from is recorded in
            ``dataset.query_positions``. ``None`` shows every chunk whole in one call
            (llama-index-finetuning's way: its questions then ask mostly about the start).
        num_workers: The most LLM calls in flight at once (bounds memory and connections). The
            run starts with up to 32 and grows while the server keeps up; a 429 or a timeout
            shrinks it (see ``generate/pacing.py``).
        cache_path: Append-only JSONL resume cache. Each finished chunk is written and fsync'd
            as it finishes; a rerun skips them. A cache belongs to one prompt, model,
            ``num_questions_per_chunk``, metadata mode and set of nodes: anything else is refused
            with a ``ValueError``. Failed chunks are not cached, so a rerun retries them.
        show_progress: tqdm bar with calls, retries and tokens (default ``None``: shown when
            the package's logger shows INFO).
        metadata_mode: ``MetadataMode`` used to render the text given to the LLM and stored in
            the corpus; default ``"embed"``, what ``VectorStoreIndex`` embeds.
        max_attempts: Calls per chunk (first try included) before the chunk counts as failed.
            Transient errors (429, 5xx, timeouts, connection errors) and unusable output (no
            question in it) are retried with exponential backoff and jitter, honouring
            ``Retry-After`` (a 429 pauses every call and paces later ones below the rate the
            server accepted).
        backoff_base: Seconds before the first retry (doubles each time, jittered).
        backoff_max: Cap on one backoff.
        timeout: Seconds before one call is abandoned and retried (``None``: the LLM's own).
        on_failure: ``"continue"`` records failed chunks in ``dataset.failed_chunks`` (id ->
            reason); ``"raise"`` stops at the first failed chunk with ``RuntimeError``
            (``"fail"``, llama-index-finetuning's name, is the same). HTTP 401/403/404 and
            programming errors always stop the run at once.
        source: Tag written to ``dataset.query_sources`` for every query.
        llm_id: Model id recorded in the cache (default: the LLM's ``cache_key`` if it has one,
            else its class and ``metadata.model_name``).
        seed: Seed of the backoff jitter.
        output_path: Also save the dataset JSON here (llama-index-finetuning's argument; unlike
            there it is never read back: resuming is ``cache_path``'s job).
        verbose: llama-index-finetuning's name for ``show_progress``.
        retry_limit: llama-index-finetuning's name for ``max_attempts`` (its calls per chunk,
            first try included); give one or the other.
        save_every: llama-index-finetuning's "save ``output_path`` every N chunks". Accepted
            and not used (a warning says so): ``cache_path`` saves every chunk as it finishes,
            and ``output_path`` is written once, at the end.
        max_rpm: Requests per minute the calls may start at (your key's limit; ``None``: learned
            from 429s and the ``x-ratelimit-*`` headers the server sends with them).
        max_tpm: Tokens per minute (prompt + completion, from the calls' reported usage;
            estimated from the prompt's length until the first usage is seen).
        max_calls: A budget: start no call after this many (retries count). The run stops
            cleanly: finished chunks are in ``cache_path``, the rest are neither failed nor
            cached (``generation_stats["chunks_left"]``), and a rerun with the same cache asks
            only for them. Calls already in flight when it is reached still finish.
        budget_tokens: The same budget in tokens (prompt + completion, as the LLM reports them).

    Raises:
        ValueError: an option out of range (checked here, before any call is made).

    Example:
        >>> GenerationSettings(num_workers=8, max_attempts=3).num_workers
        8
    """

    num_workers: int = 128
    cache_path: str | os.PathLike[str] | None = None
    show_progress: bool | None = None
    metadata_mode: str = "embed"
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    timeout: float | None = None
    on_failure: OnFailure = "continue"
    source: str = "llm"
    llm_id: str | None = None
    seed: int | None = None
    output_path: str | os.PathLike[str] | None = None
    verbose: bool | None = None
    retry_limit: int | None = None
    save_every: int | None = None
    max_rpm: float | None = None
    max_tpm: float | None = None
    max_calls: int | None = None
    budget_tokens: int | None = None
    passage_words: int | None = PASSAGE_WORDS

    def __post_init__(self) -> None:
        _positive_int("num_workers", self.num_workers)
        if self.passage_words is not None:
            _positive_int("passage_words", self.passage_words)
        if self.retry_limit is not None:
            _positive_int("retry_limit", self.retry_limit)
            if self.max_attempts not in (self.retry_limit, 5):
                raise ValueError(
                    f"retry_limit={self.retry_limit} and max_attempts={self.max_attempts} "
                    "disagree: they are the same setting (calls per chunk); give one of them"
                )
            object.__setattr__(self, "max_attempts", self.retry_limit)
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive int, got {self.max_attempts!r}")
        if self.on_failure not in ("continue", "raise", "fail"):
            raise ValueError(
                f"on_failure must be 'continue' or 'raise' ('fail' = 'raise'), "
                f"got {self.on_failure!r}"
            )
        if self.on_failure == "fail":  # llama-index-finetuning's spelling
            object.__setattr__(self, "on_failure", "raise")
        if self.save_every is not None:
            _positive_int("save_every", self.save_every)
            warn_unused(
                "save_every",
                "pass cache_path= to save every chunk as it finishes (a rerun resumes from it); "
                "output_path is written once, at the end",
            )
        timeout = self.timeout
        if self.backoff_base < 0 or self.backoff_max < 0 or (timeout is not None and timeout <= 0):
            raise ValueError("backoff_base/backoff_max must be >= 0 and timeout > 0 (or None)")
        _metadata_mode(self.metadata_mode)
        for name in ("max_calls", "budget_tokens"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name in ("max_rpm", "max_tpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a positive number (per minute) or None")

    @property
    def mode(self) -> str:
        """``metadata_mode`` as a ``MetadataMode`` value (``"embed"``, ``"none"``, ...)."""
        return _metadata_mode(self.metadata_mode).value

    def progress(self, logger: logging.Logger) -> bool:
        """Whether to show the bar: ``show_progress``, else ``verbose``, else the log level."""
        chosen = self.show_progress if self.show_progress is not None else self.verbose
        return progress_enabled(chosen, logger)


def check_inputs(nodes: Any, template: Any, num_questions: Any) -> None:
    """Check the positional inputs of a generation call; raise where the input is wrong."""
    from llama_index.core.llms import LLM
    from llama_index.core.schema import BaseNode

    if isinstance(nodes, LLM):
        raise TypeError(
            f"nodes must be a sequence of BaseNode, got an LLM ({type(nodes).__name__}): the "
            "order is (nodes, llm, ...), as in llama-index-finetuning; or pass nodes=, llm="
        )
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise TypeError(f"nodes must be a sequence of BaseNode, got {type(nodes).__name__}")
    if not nodes:
        raise ValueError("nodes is empty: pass the chunks to write questions about")
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
        template.format(context_str="", num_questions_per_chunk=num_questions)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"qa_generate_prompt_tmpl cannot be formatted ({type(exc).__name__}: {exc}); its only "
            "fields are {context_str} and {num_questions_per_chunk}: write literal braces as {{ }}"
        ) from None
    _positive_int("num_questions_per_chunk", num_questions)


def with_settings_signature(settings_cls: type, **defaults: Any) -> Callable[[F], F]:
    """Show a function's ``**options`` as the keyword-only fields of ``settings_cls``.

    ``inspect.signature``, ``help()`` and notebooks then list every option with its default
    (``defaults`` overrides some, for a function that builds its settings with other defaults);
    the options themselves stay defined once, in the settings class.

    Example:
        >>> @with_settings_signature(GenerationSettings)
        ... def run(nodes, **options): ...
        >>> list(inspect.signature(run).parameters)[:3]
        ['nodes', 'num_workers', 'cache_path']
    """

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        named = {p.name for p in params}
        params += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=f.type,
                              default=defaults.get(f.name, f.default))  # fmt: skip
            for f in dataclasses.fields(settings_cls)
            if f.name not in named
        ]
        func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return func

    return decorate


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _metadata_mode(value: str) -> Any:
    from llama_index.core.schema import MetadataMode

    try:
        return MetadataMode(value)
    except ValueError:
        choices = [m.value for m in MetadataMode]
        raise ValueError(f"metadata_mode must be one of {choices}, got {value!r}") from None

