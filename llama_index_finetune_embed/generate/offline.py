"""The offline generator: local-LLM questions through a strict filter, plus pseudo-queries.

:func:`generate_offline_pairs` and :func:`offline_val_questions` are the entry points; this
module holds their policy (prompt, chunk clipping, one pass per answer prefix, the question
filter). The LLM part runs the package's generator (:mod:`~llama_index_finetune_embed.generate`)
and reads failed chunks from its result, by value; the pseudo part is
:func:`~llama_index_finetune_embed.generate.pseudo.generate_pseudo_queries`.

SmolLM2-135M is a very weak question writer. What made it usable at all (probes on 24 Lyft
10-K chunks, greedy, repetition penalty 1.2): the one-shot example as a previous chat turn
rather than inline in the prompt, the answer started with "What", the chunk cut to ~200 words,
and everything after the first "?" dropped (see ``LocalLLM.question_writer``). Even so most
outputs are chat ("What would you do if your company...?") or generic, so the filter keeps few:
76 questions from 334 Lyft chunks (23%, 196 s on 2 CPU cores), 11 of 40 pydoc chunks with three
prefixes (What/How/Which).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.generate._passages import passage_spans, position
from llama_index_finetune_embed.generate.llms import (
    QUESTION_EXAMPLE,
    QUESTION_PROMPT_TMPL,
    LocalLLM,
)
from llama_index_finetune_embed.generate.pseudo import (
    METHODS,
    PseudoMethod,
    generate_pseudo_queries,
)
from llama_index_finetune_embed.generate.run import GenerationRun, run_sync
from llama_index_finetune_embed.generate.settings import (
    GenerationSettings,
    with_settings_signature,
)

if TYPE_CHECKING:
    from llama_index.core.llms import LLM
    from llama_index.core.schema import BaseNode

__all__ = ["OfflineSettings", "clean_question", "generate_offline_pairs", "offline_val_questions"]

logger = logging.getLogger(__name__)

#: The local LLM's prompt for any other LLM (no chat turns): the example is inline.
INLINE_QA_PROMPT_TMPL = (
    f"{QUESTION_EXAMPLE[0]}\nQuestion: {QUESTION_EXAMPLE[1]}\n\n{QUESTION_PROMPT_TMPL}\nQuestion:"
)

_STOPWORDS = frozenset(
    """the a an and or of to in on for by with from as at is are was were be been being this
    that these those its it our we their they them which what how why who whom when where does
    do did has have had not can could may might will would should shall about into than other
    such any all more most some also there here been very much many""".split()
)
_PERSONAL = re.compile(r"\b(?:you|your|yours|yourself|i|me|my)\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class OfflineSettings:
    """How the offline generator asks an LLM, and the seed and rendering of both of its parts.

    Args:
        questions_per_chunk: LLM questions kept per chunk, at most (SmolLM writes one).
        llm_prefixes: LocalLLM only: the assistant's answer starts with the first prefix; chunks
            left without a usable question are asked again with the next one ("How", ...).
        context_words: chunk words shown to the LLM at once (SmolLM was measured at ~300
            tokens). A longer chunk is cut into passages of about this many words and each pass
            reads another one (a random first passage per chunk, then the next), so questions
            come from every part of a chunk, not only its start.
        num_workers: LLM calls in flight; default the LocalLLM's ``batch_size`` (so its
            batching fills), else 4.
        cache_path: resume cache of the LLM part (JSONL, see ``generate_qa_embedding_pairs``).
        show_progress: progress bar of the LLM part (default: follows the log level).
        seed: seed of the pseudo-query draw (and of the LLM part's backoff jitter).
        metadata_mode: how the corpus renders the nodes (``node.get_content(metadata_mode=...)``).

    Raises:
        ValueError: ``context_words`` < 1 or no ``llm_prefixes`` (checked at construction).

    Example:
        >>> OfflineSettings(llm_prefixes=("What", "How")).llm_prefixes
        ('What', 'How')
    """

    questions_per_chunk: int = 1
    llm_prefixes: Sequence[str] = ("What",)
    context_words: int = 200
    num_workers: int | None = None
    cache_path: str | os.PathLike[str] | None = None
    show_progress: bool | None = None
    seed: int = 0
    metadata_mode: str = "embed"

    def __post_init__(self) -> None:
        if self.context_words < 1:
            raise ValueError(f"context_words must be >= 1, got {self.context_words}")
        if not self.llm_prefixes:
            raise ValueError("llm_prefixes must name at least one prefix, e.g. ('What',)")


#: Held-out questions get more chances: chunks left without one are asked with "How", "Which".
_VAL_DEFAULTS: dict[str, Any] = {"llm_prefixes": ("What", "How", "Which")}


@with_settings_signature(OfflineSettings)
def generate_offline_pairs(
    nodes: Sequence[BaseNode],
    *,
    llm: LLM | None = None,
    pseudo: Sequence[PseudoMethod] = ("ict",),
    pseudo_per_chunk: int = 1,
    remove_prob: float = 0.0,
    **options: Any,
) -> EmbeddingQAFinetuneDataset:
    """Return training pairs made offline: LLM questions that pass a strict filter + pseudo-queries.

    The LLM part (skipped when ``llm`` is None) runs the package's generator with a one-shot
    prompt on one passage of each chunk (``context_words`` words, another passage each pass),
    then keeps a question only if it ends
    with "?", has 5-40 words, does not address "you", and shares at least two content words with
    its chunk (:func:`clean_question`). A ``LocalLLM`` (SmolLM2-135M) is set up for this by
    ``LocalLLM.question_writer``: the example as a previous chat turn, the answer started with
    "What". The pseudo part adds ``pseudo_per_chunk`` pairs per chunk for each method in
    ``pseudo`` (see :func:`generate_pseudo_queries`). ``query_sources`` tags every query
    ``"llm"``, ``"ict"`` or ``"crop"``. The corpus holds every node under its id (plus pseudo
    positives), so a model trained on it is evaluated on real questions against the node texts.

    Args:
        nodes: the chunks.
        llm: None (pseudo-queries only), a ``LocalLLM``, or any LlamaIndex LLM.
        pseudo: pseudo-query methods to add (``()`` for LLM questions only).
        pseudo_per_chunk, remove_prob: see :func:`generate_pseudo_queries`.
        **options: the fields of :class:`OfflineSettings` (``questions_per_chunk=1``,
            ``llm_prefixes=("What",)``, ``context_words=200``, ``num_workers``, ``cache_path``,
            ``show_progress``, ``seed=0``, ``metadata_mode="embed"``), documented there.

    Example:
        >>> train = generate_offline_pairs(nodes)  # ICT pairs only, no LLM  # doctest: +SKIP
        >>> train = generate_offline_pairs(nodes, llm=LocalLLM())  # doctest: +SKIP
        >>> sorted(set(train.query_sources.values()))  # doctest: +SKIP
        ['ict', 'llm']
    """
    settings = OfflineSettings(**options)
    methods = _check_request(nodes, llm, pseudo)
    parts = [] if llm is None else [llm_pairs(nodes, llm, settings)]
    for method in methods:
        parts.append(
            generate_pseudo_queries(
                nodes, method=method, per_chunk=pseudo_per_chunk, remove_prob=remove_prob,
                seed=settings.seed, metadata_mode=settings.metadata_mode,
            )  # fmt: skip
        )
    dataset = parts[0].merge(*parts[1:])
    counts = {src: list(dataset.query_sources.values()).count(src) for src in ("llm", *methods)}
    logger.info("offline pairs: %s", ", ".join(f"{n} {src}" for src, n in counts.items()))
    return dataset


@with_settings_signature(OfflineSettings, **_VAL_DEFAULTS)
def offline_val_questions(
    nodes: Sequence[BaseNode], *, llm: LLM | None = None, **options: Any
) -> EmbeddingQAFinetuneDataset:
    """Return held-out queries for evaluation made offline: filtered LLM questions, else ICT.

    With an ``llm``: the filtered questions of :func:`generate_offline_pairs` (no pseudo-queries,
    and by default three answer prefixes: What, How, Which), so the evaluation measures retrieval
    of questions. Without one: one sentence per chunk as the query against the full node texts -
    a much easier, lexical task (the sentence is in its chunk); use that fallback only as a rough
    check. ``**options`` are the fields of :class:`OfflineSettings`.

    Example:
        >>> val = offline_val_questions(val_nodes, llm=LocalLLM())  # doctest: +SKIP
    """
    settings = OfflineSettings(**{**_VAL_DEFAULTS, **options})
    if llm is not None:
        _check_request(nodes, llm, ())
        return llm_pairs(nodes, llm, settings)
    return generate_pseudo_queries(
        nodes, method="ict", per_chunk=1, remove_prob=0.0, seed=settings.seed,
        metadata_mode=settings.metadata_mode,
    )  # fmt: skip


def _check_request(nodes: Sequence[BaseNode], llm: Any, pseudo: Any) -> tuple[PseudoMethod, ...]:
    """The pseudo methods asked for, after checking there is something valid to make."""
    methods = (pseudo,) if isinstance(pseudo, str) else tuple(pseudo)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"pseudo methods must be among {list(METHODS)}, got {bad}")
    if isinstance(llm, str):
        raise ValueError(
            f"llm must be an LLM object or None, got {llm!r}: pass LocalLLM() for the offline "
            "model (make_llm turns a --llm choice such as 'local' into one)"
        )
    if llm is None and not methods:
        raise ValueError("nothing to generate: pass an llm and/or pseudo methods")
    if not nodes:
        raise ValueError("nodes is empty: offline pairs need at least one chunk")
    return methods


def passage_nodes(
    nodes: Sequence[BaseNode], pass_index: int, settings: OfflineSettings
) -> tuple[list[BaseNode], dict[str, dict[str, int]]]:
    """Copies of ``nodes`` holding the passage pass ``pass_index`` reads (cut to
    ``context_words``), and where each passage lies in its node's corpus text.

    A chunk's passages are read in turn from a random one (seeded by ``seed`` and the node id),
    so a second pass reads another part of the chunk than the first, and over a corpus every
    part is read as often as the start.
    """
    from llama_index.core.schema import MetadataMode, TextNode

    out: list[BaseNode] = []
    spots: dict[str, dict[str, int]] = {}
    mode = MetadataMode(settings.metadata_mode)
    for node in nodes:
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        spans = passage_spans(text, settings.context_words)
        index = _passage_index(node.node_id, len(spans), pass_index, settings.seed)
        shift = max(0, node.get_content(metadata_mode=mode).find(text))
        spots[node.node_id] = position(spans, index, shift)
        start, end = spans[index]
        words = text[start:end].split()
        cut = len(spans) > 1 or len(words) > settings.context_words
        if cut and isinstance(node, TextNode):  # a short chunk is shown as it is
            node = node.model_copy(update={"text": " ".join(words[: settings.context_words])})
        out.append(node)
    return out, spots


def passage_index(node: BaseNode, pass_index: int, settings: OfflineSettings) -> int:
    """Which of ``node``'s passages pass ``pass_index`` reads (see :func:`passage_nodes`)."""
    from llama_index.core.schema import MetadataMode

    text = node.get_content(metadata_mode=MetadataMode.NONE)
    count = len(passage_spans(text, settings.context_words))
    return _passage_index(node.node_id, count, pass_index, settings.seed)


def _passage_index(node_id: str, count: int, pass_index: int, seed: int) -> int:
    first = random.Random(f"{seed}:{node_id}").randrange(count)
    return (first + pass_index) % count


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


@dataclasses.dataclass(frozen=True)
class _Asker:
    """How the offline generator asks one LLM: prompt, the LLM of each pass, workers, attempts."""

    passes: list[Any]  # the LLM of each pass; a LocalLLM gets one per answer prefix
    prompt: str
    num_workers: int
    max_attempts: int
    writer: LocalLLM | None = None  # a LocalLLM: passes that read one passage share its read

    @classmethod
    def for_llm(cls, llm: Any, prefixes: Sequence[str], num_workers: int | None) -> _Asker:
        if not isinstance(llm, LocalLLM):  # one pass: an API LLM is not steered by a prefix
            return cls([llm], INLINE_QA_PROMPT_TMPL, num_workers or 4, max_attempts=3)
        writer = llm.question_writer()
        passes = [
            writer if writer.assistant_prefix == p else writer.with_options(assistant_prefix=p)
            for p in prefixes
        ]  # copies share the loaded weights
        # greedy decoding writes the same text again: one attempt per pass
        return cls(passes, QUESTION_PROMPT_TMPL, num_workers or llm.batch_size, max_attempts=1,
                   writer=writer)  # fmt: skip

    def runs(
        self, nodes: Sequence[BaseNode], settings: OfflineSettings
    ) -> list[tuple[tuple[int, ...], list[BaseNode]]]:
        """The generation runs, in the order they are made: ``(passes, chunks)``. A LocalLLM's
        passes that show a chunk the same passage (all of a short chunk's) are one run, which
        reads the passage once and decodes each pass's prefix from it; otherwise one run a pass."""
        count = min(len(self.passes), len(settings.llm_prefixes))
        if self.writer is None or count == 1:
            return [((i,), list(nodes)) for i in range(count)]
        groups: dict[tuple[int, ...], list[BaseNode]] = {}
        for node in nodes:
            seen: dict[int, list[int]] = {}
            for i in range(count):
                seen.setdefault(passage_index(node, i, settings), []).append(i)
            for passes in seen.values():
                groups.setdefault(tuple(passes), []).append(node)
        return sorted(groups.items())

    def llm_for(self, passes: tuple[int, ...], prefixes: Sequence[str]) -> Any:
        if len(passes) == 1:
            return self.passes[passes[0]]
        assert self.writer is not None
        return self.writer.with_options(assistant_prefixes=[prefixes[i] for i in passes])


def llm_pairs(
    nodes: Sequence[BaseNode], llm: Any, settings: OfflineSettings
) -> EmbeddingQAFinetuneDataset:
    """LLM questions through the generation run, then the offline filter; tagged ``"llm"``.

    A LocalLLM is asked once per prefix in ``llm_prefixes`` (pass i reads passage i of the
    chunk's passages, in turn from a random one), and each chunk keeps the first
    ``questions_per_chunk`` usable questions in pass order; a pass is not asked about a chunk
    whose earlier passes already gave that many (greedy decoding would write the same text
    again for the same prefix). Passes that show a chunk the same passage (every pass of a
    short chunk) read it once: their prefixes are decoded from one prefill, which is what
    asking them one by one writes (exactly in float32) at about half the time. Each run has its
    own resume cache (``cache_path`` with ``.<prefix>`` or ``.<prefix>_<prefix>...`` added).
    """
    prefixes, n = settings.llm_prefixes, settings.questions_per_chunk
    asker = _Asker.for_llm(llm, prefixes, settings.num_workers)
    texts = {node.node_id: node.get_content() for node in nodes}
    found: dict[str, dict[int, list[tuple[str, dict[str, int]]]]] = {}  # chunk, pass: kept
    stats: dict[str, float | int] = {}
    for passes, members in asker.runs(nodes, settings):
        todo = [node for node in members
                if len(_kept(found.get(node.node_id, {}), n, before=passes[0])) < n]  # fmt: skip
        if not todo:
            continue
        run_settings = GenerationSettings(
            num_workers=asker.num_workers,
            cache_path=_pass_cache(settings.cache_path, passes, prefixes),
            show_progress=settings.show_progress, max_attempts=asker.max_attempts,
            seed=settings.seed,
            metadata_mode="none",  # the LLM sees the chunk text only; the corpus is rebuilt
        )  # fmt: skip
        clipped, spots = passage_nodes(todo, passes[0], settings)
        clipped.sort(key=lambda node: len(node.get_content()))  # batches of like lengths pad less
        raw = _ask(clipped, asker.llm_for(passes, prefixes), asker.prompt, n * len(passes),
                   run_settings)  # fmt: skip
        for key, value in raw.generation_stats.items():
            stats[key] = stats.get(key, 0) + value
        stats["llm_questions_written"] = stats.get("llm_questions_written", 0) + len(raw)
        for nid, questions in _by_chunk(raw).items():
            mine = found.setdefault(nid, {})
            for i, question in _by_pass(questions, passes, prefixes):
                clean = clean_question(question, texts[nid])
                if clean:
                    mine.setdefault(i, []).append((clean, spots[nid]))
    kept: dict[str, list[str]] = {}
    where: dict[str, list[dict[str, int]]] = {}
    for nid, by_pass in found.items():
        if chosen := _kept(by_pass, n):
            kept[nid], where[nid] = [q for q, _ in chosen], [spot for _, spot in chosen]
    dataset = EmbeddingQAFinetuneDataset.from_nodes(
        nodes, kept, metadata_mode=settings.metadata_mode,
        query_sources=dict.fromkeys(kept, "llm"), positions=where,
    )  # fmt: skip
    stats["llm_questions_kept"] = len(dataset)
    logger.info(
        "LLM questions: %d chunks of %d have one that passes the offline filter (%d of %d kept; "
        "%d chunk passes without a usable output)",
        len(kept), len(texts), len(dataset), stats["llm_questions_written"],
        stats.get("unusable_chunks", 0),
    )  # fmt: skip
    return dataset.model_copy(update={"generation_stats": stats})


def _kept(
    by_pass: dict[int, list[tuple[str, Any]]], n: int, before: int | None = None
) -> list[tuple[str, Any]]:
    """A chunk's questions kept from its passes (those before ``before``), as asking pass by
    pass keeps them: a pass counts only while the chunk has fewer than ``n``; duplicates go."""
    out: list[tuple[str, Any]] = []
    for i in sorted(by_pass):
        if (before is not None and i >= before) or len(out) >= n:
            break
        for clean, spot in by_pass[i][:n]:
            if clean not in [q for q, _ in out]:
                out.append((clean, spot))
    return out


def _by_chunk(raw: EmbeddingQAFinetuneDataset) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, question, nid in raw.pairs():
        out.setdefault(nid, []).append(question)
    return out


def _by_pass(
    questions: list[str], passes: tuple[int, ...], prefixes: Sequence[str]
) -> list[tuple[int, str]]:
    """Each question of one run's output with the pass it came from. The output holds one line
    a pass, in pass order, each starting with its prefix (a line may be dropped as unusable, or
    hold two questions): a question goes to the next pass whose prefix it starts with, else to
    the pass of the question before it."""
    out: list[tuple[int, str]] = []
    at, started = 0, False
    for question in questions:
        later = [k for k in range(at + started, len(passes))
                 if question.startswith(prefixes[passes[k]])]  # fmt: skip
        if later:
            at = later[0]
        started = True
        out.append((passes[at], question))
    return out


def _ask(
    nodes: Sequence[BaseNode], llm: Any, prompt: str, n: int, settings: GenerationSettings
) -> EmbeddingQAFinetuneDataset:
    """One generation pass. A small LLM writes nothing usable for most chunks: those come back
    counted in the result (``generation_stats["unusable_chunks"]``, ``failed_chunks``) rather
    than as one warning each; other failures (LLM errors) are still logged per chunk."""
    run = GenerationRun(nodes, llm, prompt, n, settings, warn_unusable=False)
    return run_sync(run.execute())


def _pass_cache(
    cache_path: str | os.PathLike[str] | None, passes: tuple[int, ...], prefixes: Sequence[str]
) -> Path | None:
    """The resume cache of one run: ``cache_path`` for the first pass alone, else its name with
    the runs' prefixes added (``q.how.jsonl``, ``q.what_which.jsonl``)."""
    if cache_path is None:
        return None
    path = Path(cache_path)
    if passes == (0,):
        return path
    tags = [re.sub(r"[^A-Za-z0-9]+", "_", prefixes[i]).strip("_").lower() or f"pass{i}"
            for i in passes]  # fmt: skip
    return path.with_name(f"{path.stem}.{'_'.join(tags)}{path.suffix}")
