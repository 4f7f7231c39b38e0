"""A ``VectorStoreIndex`` of windows that retrieves whole chunks, each scored by its best window.

Each chunk longer than the embed model's window is stored as windows that fit it (see
:mod:`.windows`); the chunks themselves go to the docstore. Retrieval fetches windows, keeps
each chunk's best window score and returns the chunks: the "chunk references" pattern of
LlamaIndex (small nodes that point at their parent) with MaxP scoring (Dai & Callan, 2019).
A chunk that fits one window is stored as itself, so a corpus of short chunks gives exactly a
plain ``VectorStoreIndex``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from llama_index_finetune_embed._io import atomic_write_json
from llama_index_finetune_embed.serving.windows import WINDOW_OF, parent_id, window_splitter

#: Written beside a persisted window index: how it was cut and which embed model reads it.
CONFIG_NAME = "window_index.json"

#: How an index stores a chunk longer than its model reads: as windows read whole ("window"), or
#: as itself, truncated by the model as a plain ``VectorStoreIndex`` does ("truncate").
LongChunks = Literal["window", "truncate"]


class WindowIndex(VectorStoreIndex):
    """``VectorStoreIndex`` whose vectors are windows and whose results are the chunks.

    Build it with :func:`build_window_index`, load it with :func:`load_window_index`. Inserted
    nodes (``insert``, ``insert_nodes``) are cut into windows the same way.

    Example:
        >>> index = build_window_index(nodes, embed_model)  # doctest: +SKIP
        >>> index.as_retriever(similarity_top_k=3).retrieve("Who founded Lyft?")  # doctest: +SKIP
    """

    def __init__(
        self,
        nodes: Sequence[BaseNode] | None = None,
        *,
        window_tokens: int | None = None,
        overlap: int | None = None,
        long_chunks: LongChunks = "window",
        **kwargs: Any,
    ) -> None:
        if long_chunks not in ("window", "truncate"):
            raise ValueError(f"long_chunks must be 'window' or 'truncate', got {long_chunks!r}")
        self._window_tokens, self._overlap = window_tokens, overlap
        self.long_chunks = long_chunks
        self._splitter: Any = None
        super().__init__(nodes, **kwargs)

    @property
    def embed_model(self) -> Any:
        """The embed model that reads the windows and the queries."""
        return self._embed_model

    @property
    def splitter(self) -> Any:
        """The :class:`~.windows.WindowSplitter` fitted to this index's embed model."""
        if self._splitter is None:
            self._splitter = window_splitter(
                self._embed_model, window_tokens=self._window_tokens, overlap=self._overlap
            )
        return self._splitter

    def _cut(self, nodes: Sequence[BaseNode]) -> list[BaseNode]:
        """The vectors' nodes: windows, or the nodes themselves with ``long_chunks="truncate"``."""
        return list(nodes) if self.long_chunks == "truncate" else self.splitter.split_nodes(nodes)

    def _build_index_from_nodes(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> Any:
        self.docstore.add_documents(list(nodes), allow_update=True)
        return super()._build_index_from_nodes(self._cut(nodes), **insert_kwargs)

    def _insert(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        self.docstore.add_documents(list(nodes), allow_update=True)
        super()._insert(self._cut(nodes), **insert_kwargs)

    async def ainsert_nodes(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        self.docstore.add_documents(list(nodes), allow_update=True)
        await super().ainsert_nodes(self._cut(nodes), **insert_kwargs)

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:
        """A :class:`WindowRetriever`: the ``similarity_top_k`` best chunks by their best window.

        Other keyword arguments (``filters=``, ``vector_store_query_mode=``, ...) go to the
        ``VectorIndexRetriever`` that fetches the windows.
        """
        top_k = kwargs.pop("similarity_top_k", DEFAULT_SIMILARITY_TOP_K)
        return WindowRetriever(self, similarity_top_k=top_k, **kwargs)

    def as_window_retriever(self, **kwargs: Any) -> BaseRetriever:
        """The plain ``VectorIndexRetriever`` over the windows themselves."""
        return super().as_retriever(**kwargs)

    def persist(self, persist_dir: str | os.PathLike[str]) -> None:
        """``storage_context.persist(persist_dir)`` plus ``window_index.json`` (the window
        settings and, for a model loaded from a path or hub id, which model to load it with)."""
        self.storage_context.persist(persist_dir=str(persist_dir))
        atomic_write_json(Path(persist_dir) / CONFIG_NAME, {
            "format": 1,
            "embed_model": _model_id(self._embed_model),
            "window_tokens": self.splitter.tokens,
            "overlap": self.splitter.overlap,
            "long_chunks": self.long_chunks,
        })  # fmt: skip


class WindowRetriever(BaseRetriever):
    """Retrieves windows, keeps each chunk's best score, returns the ``similarity_top_k`` chunks.

    Windows are fetched until ``similarity_top_k`` distinct chunks are among them (or the store
    runs out), so the result is exactly the chunks ranked by their best window.
    """

    def __init__(self, index: WindowIndex, *, similarity_top_k: int, **kwargs: Any) -> None:
        if similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {similarity_top_k!r}")
        self._index, self.similarity_top_k, self._kwargs = index, similarity_top_k, kwargs
        super().__init__(callback_manager=index._callback_manager)

    def _windows(self, fetch: int) -> BaseRetriever:
        return self._index.as_window_retriever(similarity_top_k=fetch, **self._kwargs)

    def _first_fetch(self) -> int:
        return max(2 * self.similarity_top_k, self.similarity_top_k + 10)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        fetch, found = self._first_fetch(), None
        while found is None:
            hits = self._windows(fetch).retrieve(query_bundle)  # embeds the query once
            found, fetch = self._top_chunks(hits, fetch), fetch * 4
        return found

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        fetch, found = self._first_fetch(), None
        while found is None:
            hits = await self._windows(fetch).aretrieve(query_bundle)
            found, fetch = self._top_chunks(hits, fetch), fetch * 4
        return found

    def _top_chunks(self, hits: list[NodeWithScore], fetch: int) -> list[NodeWithScore] | None:
        """The top chunks, or ``None`` when ``fetch`` windows held too few chunks (fetch more)."""
        best = _best_per_parent(hits)
        if len(best) < self.similarity_top_k and len(hits) >= fetch:
            return None
        return self._parents(best[: self.similarity_top_k])

    def _parents(self, best: list[tuple[str, NodeWithScore]]) -> list[NodeWithScore]:
        """Each chunk from the docstore (a chunk that is its own window: the hit itself)."""
        out = []
        for pid, hit in best:
            if WINDOW_OF not in (hit.node.metadata or {}):
                out.append(hit)
                continue
            node = self._index.docstore.get_node(pid, raise_error=False)
            if node is None:
                raise ValueError(
                    f"chunk {pid!r} is not in the index's docstore: load the index with the "
                    "docstore it was built with (load_window_index(persist_dir) or "
                    "StorageContext.from_defaults(vector_store=..., persist_dir=...))"
                )
            out.append(NodeWithScore(node=node, score=hit.score))
        return out


def _best_per_parent(hits: list[NodeWithScore]) -> list[tuple[str, NodeWithScore]]:
    """``(chunk id, its best window hit)``, best first (hits come best first)."""
    best: dict[str, NodeWithScore] = {}
    for hit in hits:
        best.setdefault(parent_id(hit.node), hit)
    return list(best.items())


def build_window_index(
    nodes: Sequence[BaseNode],
    embed_model: Any,
    *,
    window_tokens: int | None = None,
    overlap: int | None = None,
    long_chunks: LongChunks = "window",
    storage_context: StorageContext | None = None,
    show_progress: bool = False,
    **kwargs: Any,
) -> WindowIndex:
    """An index over ``nodes`` that reads every chunk whole: windows in, chunks out.

    Each node longer than ``embed_model``'s window is cut into windows that fit it exactly (its
    tokenizer, its max length, its document prompt and the node's metadata header; API models:
    ``window_tokens`` of LlamaIndex's tokenizer, default 512). Retrievers return the original
    nodes (ids, metadata), each at most once, scored by their best window; query engines cite
    them as sources. A node that fits one window is stored as itself.

    Args:
        nodes: the chunks (e.g. ``SentenceSplitter().get_nodes_from_documents(docs)``).
        embed_model: any LlamaIndex ``BaseEmbedding`` (the finetuned model, an adapter, an
            API model).
        window_tokens: at most this many tokens per window (default: all the model reads).
        overlap: tokens shared by consecutive windows of a chunk (default: a quarter window).
        long_chunks: ``"window"`` (the default, above) or ``"truncate"``: every node stored as
            itself and read as far as the model reads, exactly a plain ``VectorStoreIndex``
            (what the main job serves when its report measured that best), still loaded back
            with :func:`load_window_index`.
        storage_context: where windows (vector store) and chunks (docstore) go; any vector store.
        show_progress: embedding progress bar.
        **kwargs: passed to ``VectorStoreIndex`` (e.g. ``insert_batch_size``).

    Example:
        >>> from llama_index_finetune_embed import build_window_index, load_embed_model
        >>> embed_model = load_embed_model("local:all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> index = build_window_index(nodes, embed_model)  # doctest: +SKIP
        >>> index.as_query_engine(llm=llm).query("What did Uber earn in 2021?")  # doctest: +SKIP
    """
    return WindowIndex(
        list(nodes),
        window_tokens=window_tokens,
        overlap=overlap,
        long_chunks=long_chunks,
        embed_model=embed_model,
        storage_context=storage_context,
        show_progress=show_progress,
        **kwargs,
    )


def load_window_index(
    persist_dir: str | os.PathLike[str] | None = None,
    *,
    storage_context: StorageContext | None = None,
    embed_model: Any = None,
    index_id: str | None = None,
) -> WindowIndex:
    """A window index back from ``persist_dir`` (``WindowIndex.persist``) or a storage context.

    ``embed_model`` defaults to the model recorded in ``window_index.json`` (a path or hub id).
    With a vector store of its own (Qdrant, Chroma, ...), pass
    ``StorageContext.from_defaults(vector_store=store, persist_dir=persist_dir)``.

    Example:
        >>> index = load_window_index("runs/demo/index")  # doctest: +SKIP
        >>> index.as_retriever(similarity_top_k=3).retrieve("Sort a list?")  # doctest: +SKIP
    """
    config = _read_config(persist_dir)
    if storage_context is None:
        if persist_dir is None:
            raise ValueError("pass persist_dir= or storage_context=")
        storage_context = StorageContext.from_defaults(persist_dir=str(persist_dir))
    if embed_model is None:
        if not config.get("embed_model"):
            raise ValueError(
                "this window index does not record its embed model: pass embed_model= (the "
                "model it was built with)"
            )
        from llama_index_finetune_embed.embeddings import load_embed_model

        embed_model = load_embed_model(config["embed_model"])
    struct = storage_context.index_store.get_index_struct(index_id)
    if struct is None:
        raise ValueError(f"no index found in the storage context (index_id={index_id!r})")
    return WindowIndex(
        window_tokens=config.get("window_tokens"),
        overlap=config.get("overlap"),
        long_chunks=config.get("long_chunks", "window"),
        index_struct=struct,
        storage_context=storage_context,
        embed_model=embed_model,
    )


def _read_config(persist_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    path = Path(persist_dir) / CONFIG_NAME if persist_dir is not None else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _model_id(embed_model: Any) -> str | None:
    """A model id :func:`load_embed_model` can load again: a HuggingFaceEmbedding's path or hub
    id (relative paths made absolute), else ``None``."""
    from llama_index_finetune_embed.embeddings import is_hf_embedding

    if not is_hf_embedding(embed_model):
        return None
    name = str(embed_model.model_name)
    return str(Path(name).resolve()) if Path(name).is_dir() else name
