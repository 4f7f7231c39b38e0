"""EmbeddingQAFinetuneDataset: (query, relevant chunk) pairs, llama-index-finetuning JSON format."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import BaseModel, Field, model_validator

from llama_index_finetune_embed._io import atomic_write_json, stable_id

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

_REQUIRED_KEYS = ("queries", "corpus", "relevant_docs")


class EmbeddingQAFinetuneDataset(BaseModel):
    """Queries, a corpus of chunks, and which chunks answer which query.

    The JSON layout is llama-index-finetuning's (``queries``, ``corpus``, ``relevant_docs``,
    ``mode``), so files move freely between the two packages. Optional fields are ours and
    are ignored by llama-index-finetuning: ``metadata_mode`` (how node text was rendered, so
    training sees what the index embeds), ``query_sources`` (which generator wrote a query),
    ``query_positions`` (which passage of its chunk a query was written from: see
    :meth:`position_summary`), ``failed_chunks`` (chunks whose question generation failed, and
    why) and ``generation_stats`` (LLM calls, retries and tokens the generation cost).

    Example:
        >>> ds = EmbeddingQAFinetuneDataset(
        ...     queries={"q1": "Who founded Lyft?"},
        ...     corpus={"c1": "Lyft was founded in 2012 by Logan Green and John Zimmer."},
        ...     relevant_docs={"q1": ["c1"]},
        ... )
        >>> len(ds), ds.query_docid_pairs
        (1, [('Who founded Lyft?', ['c1'])])

    Iterating over it is pydantic's (``dict(ds)`` gives the fields), as for llama-index-core's
    class; :attr:`query_docid_pairs` and :meth:`pairs` give the queries.
    """

    queries: dict[str, str] = Field(description="query id -> query text")
    corpus: dict[str, str] = Field(description="chunk id -> chunk text")
    relevant_docs: dict[str, list[str]] = Field(description="query id -> relevant chunk ids")
    mode: str = Field(default="text", description="llama-index-finetuning's modality tag")
    metadata_mode: str | None = Field(
        default=None, description="MetadataMode the corpus text was rendered with, if known"
    )
    query_sources: dict[str, str] = Field(
        default_factory=dict, description="query id -> generator that wrote it (llm, ict, ...)"
    )
    query_positions: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="query id -> where in its chunk it was written from: passage index, number "
        "of passages, start and end characters of the passage in the chunk's corpus text",
    )
    failed_chunks: dict[str, str] = Field(
        default_factory=dict, description="chunk id -> why generating its questions failed"
    )
    generation_stats: dict[str, float | int] = Field(
        default_factory=dict,
        description="what generation cost: LLM calls, retries, prompt/completion tokens, seconds",
    )

    @model_validator(mode="before")
    @classmethod
    def _check_types(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        for name in ("queries", "corpus"):
            _check_str_mapping(data.get(name), name)
        _check_relevant_docs(data.get("relevant_docs"))
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> EmbeddingQAFinetuneDataset:
        if not self.corpus:
            raise ValueError("corpus is empty: a dataset needs at least one chunk")
        for qid in self.queries:
            if not self.relevant_docs.get(qid):
                raise ValueError(f"query {qid!r} has no relevant docs in relevant_docs")
        for qid, doc_ids in self.relevant_docs.items():
            if qid not in self.queries:
                raise ValueError(f"relevant_docs names query {qid!r}, which is not in queries")
            for doc_id in doc_ids:
                if doc_id not in self.corpus:
                    raise ValueError(
                        f"relevant doc {doc_id!r} of query {qid!r} is not in the corpus"
                    )
        for qid, where in self.query_positions.items():
            if qid not in self.queries:
                raise ValueError(f"query_positions names query {qid!r}, which is not in queries")
            if not 0 <= where.get("passage", -1) < where.get("passages", 0):
                raise ValueError(
                    f"query_positions[{qid!r}] must have 0 <= passage < passages, got {where}"
                )
        for cid in self.failed_chunks:
            if cid not in self.corpus:
                raise ValueError(f"failed_chunks names chunk {cid!r}, which is not in the corpus")
        return self

    @classmethod
    def coerce(
        cls, data: Any, name: str = "dataset", *, allow_path: bool = False
    ) -> EmbeddingQAFinetuneDataset:
        """Return ``data`` as a freshly validated dataset, or raise one error naming ``name``.

        Accepts this class, llama-index-finetuning's (same fields), any object with
        ``queries``/``corpus``/``relevant_docs`` mappings, and with ``allow_path`` a JSON path.
        Validation is redone because a dataset may have been edited after it was built.

        Raises:
            TypeError: not a dataset (nor, with ``allow_path``, a path to one).
            ValueError: no queries, or ids that do not match (the message says which).

        Example:
            >>> EmbeddingQAFinetuneDataset.coerce(
            ...     {"queries": {}, "corpus": {"c": "t"}, "relevant_docs": {}}, "train_dataset"
            ... )
            Traceback (most recent call last):
            ...
            TypeError: train_dataset must be an EmbeddingQAFinetuneDataset, got dict
        """
        if allow_path and isinstance(data, (str, os.PathLike)):
            return cls.from_json(data)
        fields = ("queries", "corpus", "relevant_docs")
        if not all(isinstance(getattr(data, f, None), Mapping) for f in fields):
            hint = " (or a path to its JSON)" if allow_path else ""
            raise TypeError(
                f"{name} must be an EmbeddingQAFinetuneDataset{hint}, got {type(data).__name__}"
            )
        if not data.queries:
            raise ValueError(f"{name} is empty: it has no queries to train or evaluate on")
        values = data.model_dump() if isinstance(data, cls) else {
            "queries": dict(data.queries),
            "corpus": dict(data.corpus),
            "relevant_docs": {k: list(v) for k, v in data.relevant_docs.items()},
            "mode": getattr(data, "mode", "text"),
        }
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{name} has inconsistent ids: {_first_error(exc)}") from None

    # -- size and queries ---------------------------------------------------------------

    def __len__(self) -> int:
        """Number of queries (training pairs count one per query)."""
        return len(self.queries)

    @property
    def query_docid_pairs(self) -> list[tuple[str, list[str]]]:
        """``(query text, [relevant chunk ids])`` per query, in query order (core's definition).

        Example:
            >>> for query, doc_ids in ds.query_docid_pairs:  # doctest: +SKIP
            ...     retrieved = retriever.retrieve(query)
        """
        return [(query, list(self.relevant_docs[qid])) for qid, query in self.queries.items()]

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        """Yield ``(query id, query text, chunk id)`` for every relevant chunk of every query."""
        for qid, query in self.queries.items():
            for doc_id in self.relevant_docs[qid]:
                yield qid, query, doc_id

    # -- JSON ----------------------------------------------------------------------------

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the dataset to ``path`` atomically (llama-index-finetuning's layout)."""
        atomic_write_json(path, self.model_dump(), indent=4)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> EmbeddingQAFinetuneDataset:
        """Load a dataset written by this package or by llama-index-finetuning.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not valid JSON or not a valid dataset (the message names
                the file and the problem).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            ) from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; expected {list(_REQUIRED_KEYS)}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise ValueError(f"{path}: {_first_error(exc)}") from None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[BaseNode],
        questions: Mapping[str, Sequence[str]],
        *,
        metadata_mode: str = "embed",
        query_sources: Mapping[str, str] | None = None,
        positions: Mapping[str, Sequence[Mapping[str, int]]] | None = None,
    ) -> EmbeddingQAFinetuneDataset:
        """Build a dataset from nodes and the questions written for each node id.

        Chunk ids are the node ids; a query id is derived from its node id and text, so it is
        the same on every rerun. ``query_sources`` maps a node id to the generator that wrote its
        questions (default: none recorded); ``positions`` maps a node id to where each of its
        questions was written from, in the order of ``questions[node_id]``
        (``query_positions``).

        Example:
            >>> from llama_index.core.schema import TextNode
            >>> node = TextNode(id_="n1", text="Lyft was founded in 2012.")
            >>> ds = EmbeddingQAFinetuneDataset.from_nodes([node], {"n1": ["When was it founded?"]})
            >>> ds.relevant_docs[next(iter(ds.queries))]
            ['n1']
        """
        from llama_index.core.schema import MetadataMode

        mode = MetadataMode(metadata_mode)
        corpus = {node.node_id: node.get_content(metadata_mode=mode) for node in nodes}
        queries: dict[str, str] = {}
        relevant: dict[str, list[str]] = {}
        sources: dict[str, str] = {}
        where: dict[str, dict[str, int]] = {}
        for node_id, texts in questions.items():
            if node_id not in corpus:
                raise ValueError(f"questions given for node {node_id!r}, which is not in nodes")
            spots = list((positions or {}).get(node_id, ()))
            for i, text in enumerate(texts):
                qid = stable_id(node_id, text)
                queries[qid] = text
                relevant[qid] = [node_id]
                if query_sources and node_id in query_sources:
                    sources[qid] = query_sources[node_id]
                if i < len(spots):
                    where[qid] = dict(spots[i])
        return cls(
            queries=queries,
            corpus=corpus,
            relevant_docs=relevant,
            metadata_mode=mode.value,
            query_sources=sources,
            query_positions=where,
        )

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[tuple[str, str]], *, source: str | None = None
    ) -> EmbeddingQAFinetuneDataset:
        """Build a dataset from ``(query, chunk text)`` pairs; ids are hashes of the texts.

        Example:
            >>> ds = EmbeddingQAFinetuneDataset.from_pairs([("Who?", "Lyft."), ("When?", "Lyft.")])
            >>> len(ds), len(ds.corpus)
            (2, 1)
        """
        queries: dict[str, str] = {}
        corpus: dict[str, str] = {}
        relevant: dict[str, list[str]] = {}
        for query, text in pairs:
            doc_id = stable_id("chunk", text)
            qid = stable_id(doc_id, query)
            corpus[doc_id] = text
            queries[qid] = query
            relevant.setdefault(qid, [])
            if doc_id not in relevant[qid]:
                relevant[qid].append(doc_id)
        sources = dict.fromkeys(queries, source) if source else {}
        return cls(queries=queries, corpus=corpus, relevant_docs=relevant, query_sources=sources)

    # -- transformations -----------------------------------------------------------------

    def merge(self, *others: EmbeddingQAFinetuneDataset) -> EmbeddingQAFinetuneDataset:
        """Return one dataset holding the queries and chunks of ``self`` and ``others``.

        Ids must agree: a chunk id present in two datasets must carry the same text (as it does
        when both were built from the same nodes), and so must a query id. ``failed_chunks`` are
        united; ``generation_stats`` are summed key by key, counting identical stats once (the
        two halves of one ``split`` carry the same run's stats).

        Example:
            >>> both = llm_pairs.merge(pseudo_pairs)  # doctest: +SKIP
        """
        corpus, queries = dict(self.corpus), dict(self.queries)
        relevant = {qid: list(docs) for qid, docs in self.relevant_docs.items()}
        sources = dict(self.query_sources)
        where = {qid: dict(spot) for qid, spot in self.query_positions.items()}
        failed = dict(self.failed_chunks)
        stats_seen = [self.generation_stats]
        for other in others:
            if other.metadata_mode != self.metadata_mode:
                raise ValueError(
                    f"cannot merge datasets rendered with different metadata modes "
                    f"({self.metadata_mode!r} vs {other.metadata_mode!r})"
                )
            _merge_texts(corpus, other.corpus, "chunk")
            _merge_texts(queries, other.queries, "query")
            for qid, docs in other.relevant_docs.items():
                merged = relevant.setdefault(qid, [])
                merged.extend(d for d in docs if d not in merged)
            sources.update(other.query_sources)
            where.update(other.query_positions)
            for cid, reason in other.failed_chunks.items():
                failed.setdefault(cid, reason)
            if other.generation_stats not in stats_seen:
                stats_seen.append(other.generation_stats)
        return self.model_copy(
            update={
                "corpus": corpus,
                "queries": queries,
                "relevant_docs": relevant,
                "query_sources": sources,
                "query_positions": where,
                "failed_chunks": failed,
                "generation_stats": _sum_stats(stats_seen),
            }
        )

    def position_summary(self) -> dict[str, float | int] | None:
        """Where the questions about long chunks point: the share written from the first passage
        against the share an even spread gives (``None`` when no query records a position).

        Only queries whose chunk has two or more passages count (``long_questions``);
        ``first_share`` is the share of them written from the first passage, ``even_share`` the
        mean of ``1 / passages`` over them. A generator that reads only the start of each chunk
        shows ``first_share`` far above ``even_share``.

        Example:
            >>> ds.position_summary()  # doctest: +SKIP
            {'questions': 90, 'long_questions': 60, 'first_share': 0.35, 'even_share': 0.33}
        """
        spots = [self.query_positions[q] for q in self.queries if q in self.query_positions]
        if not spots:
            return None
        long = [s for s in spots if s["passages"] >= 2]
        first = sum(1 for s in long if s["passage"] == 0)
        even = sum(1 / s["passages"] for s in long)
        return {
            "questions": len(spots),
            "long_questions": len(long),
            "first_share": first / len(long) if long else 0.0,
            "even_share": even / len(long) if long else 0.0,
        }

    def split(
        self, val_ratio: float = 0.2, *, seed: int = 0
    ) -> tuple[EmbeddingQAFinetuneDataset, EmbeddingQAFinetuneDataset]:
        """Split into (train, val) by chunk: no chunk's questions land on both sides.

        Chunks linked by a query that names several of them stay together. Each side keeps
        only its own chunks in its corpus. The split is deterministic for a given ``seed``.

        Example:
            >>> train, val = ds.split(0.2, seed=0)  # doctest: +SKIP
        """
        if not 0.0 < val_ratio < 1.0:
            raise ValueError(f"val_ratio must be strictly between 0 and 1, got {val_ratio}")
        groups = self._chunk_groups()
        if len(groups) < 2:
            raise ValueError(
                f"cannot split by chunk: the dataset has {len(groups)} independent chunk "
                "group(s); at least 2 are needed"
            )
        random.Random(seed).shuffle(groups)
        target = max(1, round(val_ratio * len(self.corpus)))
        val_ids: set[str] = set()
        for group in groups[:-1]:  # the last group always stays in train
            if len(val_ids) >= target:
                break
            val_ids.update(group)
        return self.subset(set(self.corpus) - val_ids), self.subset(val_ids)

    def subset(self, chunk_ids: Iterable[str]) -> EmbeddingQAFinetuneDataset:
        """Return the dataset restricted to ``chunk_ids`` and the queries answered only by them.

        ``failed_chunks`` keeps the kept chunks' entries; ``generation_stats`` (what the run that
        produced the whole dataset cost) is kept as is.
        """
        keep = set(chunk_ids)
        relevant = {
            qid: docs for qid, docs in self.relevant_docs.items() if docs and set(docs) <= keep
        }
        return self.model_copy(
            update={
                "corpus": {cid: text for cid, text in self.corpus.items() if cid in keep},
                "queries": {qid: q for qid, q in self.queries.items() if qid in relevant},
                "relevant_docs": relevant,
                "query_sources": {
                    qid: s for qid, s in self.query_sources.items() if qid in relevant
                },
                "query_positions": {
                    qid: p for qid, p in self.query_positions.items() if qid in relevant
                },
                "failed_chunks": {
                    cid: why for cid, why in self.failed_chunks.items() if cid in keep
                },
            },
            deep=True,
        )

    def _chunk_groups(self) -> list[list[str]]:
        """Connected groups of chunk ids (chunks joined by a shared query), in corpus order."""
        parent = {cid: cid for cid in self.corpus}

        def find(cid: str) -> str:
            while parent[cid] != cid:
                parent[cid] = parent[parent[cid]]
                cid = parent[cid]
            return cid

        for docs in self.relevant_docs.values():
            for other in docs[1:]:
                parent[find(other)] = find(docs[0])
        groups: dict[str, list[str]] = {}
        for cid in self.corpus:
            groups.setdefault(find(cid), []).append(cid)
        return list(groups.values())


#: llama-index-core's old name for the dataset (``llama_index.core.evaluation.LabelledQADataset``,
#: removed with the class in core 0.14.21): the same class.
LabelledQADataset = EmbeddingQAFinetuneDataset


def _check_str_mapping(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object mapping id -> text, got {type(value).__name__}")
    for key, text in value.items():
        if not isinstance(text, str):
            raise ValueError(f"{name}[{key!r}] must be a string, got {type(text).__name__}")


def _check_relevant_docs(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ValueError(
            f"relevant_docs must be an object mapping query id -> [chunk ids], "
            f"got {type(value).__name__}"
        )
    for qid, docs in value.items():
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise ValueError(f"relevant_docs[{qid!r}] must be a list of chunk id strings")


def _first_error(exc: ValueError) -> str:
    """The message of a pydantic ValidationError without its boilerplate, else ``str(exc)``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {msg}" if loc else msg
    return str(exc)


def _merge_texts(into: dict[str, str], new: Mapping[str, str], what: str) -> None:
    for key, text in new.items():
        if into.setdefault(key, text) != text:
            raise ValueError(f"cannot merge: {what} id {key!r} has different texts in the datasets")


def _sum_stats(stats: list[dict[str, float | int]]) -> dict[str, float | int]:
    total: dict[str, float | int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total
