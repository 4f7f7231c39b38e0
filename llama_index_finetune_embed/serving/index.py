"""A ``VectorStoreIndex`` of windows that retrieves whole chunks, each scored by its best window.

Each chunk longer than the embed model's window is embedded as windows that fit it (see
:mod:`.windows`); the chunks themselves go to the docstore. Retrieval fetches windows, keeps
each chunk's best window score and returns the chunks: the "chunk references" pattern of
LlamaIndex (small vectors that point at their chunk) with MaxP scoring (Dai & Callan, 2019).
A chunk that fits one window is stored as itself, so a corpus of short chunks gives exactly a
plain ``VectorStoreIndex``.

What a vector store (or, for a store without text, the docstore) holds for a window is its chunk
(text, metadata, relationships) under the window's id with ``window_of`` in its metadata. So
whatever reads the index (LlamaIndex's ``load_index_from_storage``,
``VectorStoreIndex.from_vector_store``) gets chunks back, never pieces of them; this module's
retriever also returns each chunk once. Deleting or refreshing a document or a chunk removes
all its windows (their ids are :func:`~.windows.window_id` of the chunk's id).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    IndexNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from pydantic import PrivateAttr

from llama_index_finetune_embed._io import atomic_write_json
from llama_index_finetune_embed.serving.windows import (
    WINDOW_OF,
    carried,
    chunk_of,
    parent_id,
    window_id,
    window_splitter,
)

logger = logging.getLogger(__name__)

#: Written beside a persisted window index: how it was cut and which embed model reads it.
CONFIG_NAME = "window_index.json"
#: Files ``StorageContext.persist`` writes that a window index needs back (with its default
#: vector store; one of its own keeps its vectors elsewhere).
STORE_FILES = ("docstore.json", "index_store.json")
VECTOR_FILE = "default__vector_store.json"

#: How an index stores a chunk longer than its model reads: as windows read whole ("window"), or
#: as itself, truncated by the model as a plain ``VectorStoreIndex`` does ("truncate").
LongChunks = Literal["window", "truncate"]


class _WindowEntry(TextNode):
    """What a vector store holds for one window: the chunk under the window's id, embedded as
    the window (the text to embed is private: never stored, never shown to an LLM)."""

    _embed_text: str = PrivateAttr(default="")

    def get_content(self, metadata_mode: MetadataMode = MetadataMode.NONE) -> str:
        if metadata_mode == MetadataMode.EMBED and self._embed_text:
            return self._embed_text
        return super().get_content(metadata_mode=metadata_mode)


class WindowIndex(VectorStoreIndex):
    """``VectorStoreIndex`` whose vectors are windows and whose results are the chunks.

    Build it with :func:`build_window_index`, load it with :func:`load_window_index`. Inserted
    nodes (``insert``, ``insert_nodes``, ``refresh_ref_docs``) are cut into windows the same
    way; a node inserted again under its id replaces the old one. ``delete_ref_doc``,
    ``delete_nodes`` (by chunk id) and ``refresh_ref_docs`` remove every window of what they
    remove, from any vector store.

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
        embed_with: Callable[[list[str]], list[list[float]]] | None = None,
        **kwargs: Any,
    ) -> None:
        if long_chunks not in ("window", "truncate"):
            raise ValueError(f"long_chunks must be 'window' or 'truncate', got {long_chunks!r}")
        self._embed_with = embed_with
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

    # -- adding ---------------------------------------------------------------------------

    def _cut(self, nodes: Sequence[BaseNode]) -> list[BaseNode]:
        """The vectors' nodes: each chunk that fits a window (or every chunk, with
        ``long_chunks="truncate"``) as itself, each longer chunk as its windows' entries."""
        out: list[BaseNode] = []
        cut_headers = 0
        for node in nodes:
            layout = self._windows_of(node)
            if layout is None:
                out.append(node)
                continue
            texts, cut = layout
            cut_headers += cut
            out += _entries(node, texts)
        if cut_headers:
            logger.warning(
                "%d chunk(s) embed a metadata header longer than half the model's window "
                "(%d tokens): their windows read the header's first half window only. Leave "
                "long keys out of the embedding (node.excluded_embed_metadata_keys).",
                cut_headers, self.splitter.tokens,
            )  # fmt: skip
        return out

    def _windows_of(self, node: BaseNode) -> tuple[list[str], bool] | None:
        """``(window texts, header cut)`` of a chunk stored as windows; ``None`` for one stored
        as itself (it fits a window, ``long_chunks="truncate"``, an image or index node)."""
        if self.long_chunks == "truncate" or not _windowable(node):
            return None
        texts, cut = self.splitter.layout(node)
        return (texts, cut) if len(texts) > 1 or cut else None

    def _admit(self, nodes: Sequence[BaseNode]) -> list[BaseNode]:
        """Check ``nodes``' ids, drop the vectors of chunks they replace, store them in the
        docstore; the nodes to embed."""
        nodes = list(nodes)
        seen: set[str] = set()
        for node in nodes:
            if node.node_id in seen:
                raise ValueError(
                    f"node id {node.node_id!r} appears more than once among the nodes given: "
                    "give each chunk its own id (a chunk's windows are found by its id)"
                )
            seen.add(node.node_id)
        old = [i for i in seen if self.docstore.document_exists(i)]
        if old and hasattr(self, "_index_struct"):  # not while the constructor builds
            self._drop_vectors(self._vector_ids(old), old)
        self.docstore.add_documents(nodes, allow_update=True)
        return self._cut(nodes)

    def _get_node_with_embedding(
        self, nodes: Sequence[BaseNode], show_progress: bool = False
    ) -> list[BaseNode]:
        # longest first: each embed batch holds texts of about one length (less padding)
        if self._embed_with is None:
            return super()._get_node_with_embedding(_by_length(nodes), show_progress)
        return _embedded(_by_length(nodes), self._embed_with)

    async def _aget_node_with_embedding(
        self, nodes: Sequence[BaseNode], show_progress: bool = False
    ) -> list[BaseNode]:
        if self._embed_with is None:
            return await super()._aget_node_with_embedding(_by_length(nodes), show_progress)
        return _embedded(_by_length(nodes), self._embed_with)

    def _build_index_from_nodes(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> Any:
        return super()._build_index_from_nodes(self._admit(nodes), **insert_kwargs)

    def _insert(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        super()._insert(self._admit(nodes), **insert_kwargs)

    async def ainsert_nodes(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        await super().ainsert_nodes(self._admit(nodes), **insert_kwargs)

    # -- deleting -------------------------------------------------------------------------

    def _vector_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids of the vectors of chunks ``ids``: each one's windows (laid out again from the
        chunk in the docstore, else asked of a vector store that keeps them, by ``window_of``)
        and the ids themselves."""
        out = list(dict.fromkeys(ids))
        for chunk_id in list(out):
            node = self.docstore.get_node(chunk_id, raise_error=False)
            if node is None and self._vector_store.stores_text:
                out += self._stored_window_ids(chunk_id)
                continue
            layout = self._windows_of(node) if node is not None else None
            if layout is not None:
                out += [window_id(chunk_id, i) for i in range(len(layout[0]))]
        return list(dict.fromkeys(out))

    def _first_window_texts(self, chunk_ids: list[str]) -> dict[str, str]:
        """chunk id -> its text, from its first window's entry in the vector store (where a
        store written with ``&text=once`` keeps it)."""
        ids = [window_id(c, 0) for c in chunk_ids]
        try:
            found = self._vector_store.get_nodes(ids)
        except NotImplementedError:
            return {}
        return {parent_id(n): n.get_content() for n in found if n.get_content()}

    def _stored_window_ids(self, chunk_id: str) -> list[str]:
        """The ids of a chunk's windows in a vector store that keeps them (an index written by
        ``write_window_index``: its docstore is empty), by their ``window_of`` metadata."""
        from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

        filters = MetadataFilters(filters=[MetadataFilter(key=WINDOW_OF, value=chunk_id)])
        try:
            return [n.node_id for n in self._vector_store.get_nodes(None, filters=filters)]
        except NotImplementedError:  # a store that cannot be asked: only the id itself
            return []

    def _drop_vectors(
        self, vector_ids: list[str], chunk_ids: Iterable[str], **delete_kwargs: Any
    ) -> None:
        """Delete ``vector_ids`` from the vector store and the index struct."""
        if vector_ids:
            self._vector_store.delete_nodes(vector_ids, **delete_kwargs)
        self._forget(vector_ids, chunk_ids)

    def _forget(self, vector_ids: Iterable[str], chunk_ids: Iterable[str]) -> None:
        """Drop vectors from the index struct and windows' entries from the docstore (chunks
        stay: the caller decides)."""
        chunk_ids = set(chunk_ids)
        for vector_id in vector_ids:
            self._index_struct.nodes_dict.pop(vector_id, None)
            if vector_id not in chunk_ids:
                self._docstore.delete_document(vector_id, raise_error=False)
        for chunk_id in chunk_ids:
            self._index_struct.nodes_dict.pop(chunk_id, None)
        self._storage_context.index_store.add_index_struct(self._index_struct)

    def _chunks_go(self, delete_from_docstore: bool) -> bool:
        """Whether deleted chunks leave the docstore: when asked, as ``VectorStoreIndex`` does,
        and always with a vector store that keeps the text (only this index put them there)."""
        keeps_text = self._vector_store.stores_text and not self._store_nodes_override
        return delete_from_docstore or keeps_text

    def delete_nodes(
        self, node_ids: list[str], delete_from_docstore: bool = False, **delete_kwargs: Any
    ) -> None:
        """Delete chunks (and all their windows) by id, as ``VectorStoreIndex.delete_nodes``."""
        self._drop_vectors(self._vector_ids(node_ids), node_ids, **delete_kwargs)
        if self._chunks_go(delete_from_docstore):
            for node_id in node_ids:
                self._docstore.delete_document(node_id, raise_error=False)

    async def adelete_nodes(
        self, node_ids: list[str], delete_from_docstore: bool = False, **delete_kwargs: Any
    ) -> None:
        vector_ids = self._vector_ids(node_ids)
        await self._vector_store.adelete_nodes(vector_ids, **delete_kwargs)
        self._forget(vector_ids, node_ids)
        if self._chunks_go(delete_from_docstore):
            for node_id in node_ids:
                await self._docstore.adelete_document(node_id, raise_error=False)

    def _ref_doc_chunks(self, ref_doc_id: str) -> list[str]:
        """The chunks of a document (its windows' entries, also listed there, left out)."""
        info = self._docstore.get_ref_doc_info(ref_doc_id)
        if info is None:
            return []
        nodes = self._docstore.get_nodes(list(info.node_ids), raise_error=False)
        return [n.node_id for n in nodes if WINDOW_OF not in (n.metadata or {})]

    def delete_ref_doc(
        self, ref_doc_id: str, delete_from_docstore: bool = False, **delete_kwargs: Any
    ) -> None:
        """Delete a document: all its chunks' windows, as ``VectorStoreIndex.delete_ref_doc``."""
        chunk_ids = self._ref_doc_chunks(ref_doc_id)
        vector_ids = self._vector_ids(chunk_ids)
        self._vector_store.delete(ref_doc_id, **delete_kwargs)
        self._drop_vectors(vector_ids, chunk_ids)
        if delete_from_docstore:
            self._docstore.delete_ref_doc(ref_doc_id, raise_error=False)
        elif self._chunks_go(False):
            for node_id in chunk_ids:
                self._docstore.delete_document(node_id, raise_error=False)

    async def adelete_ref_doc(
        self, ref_doc_id: str, delete_from_docstore: bool = False, **delete_kwargs: Any
    ) -> None:
        chunk_ids = self._ref_doc_chunks(ref_doc_id)
        vector_ids = self._vector_ids(chunk_ids)
        await self._vector_store.adelete(ref_doc_id, **delete_kwargs)
        if vector_ids:
            await self._vector_store.adelete_nodes(vector_ids)
        self._forget(vector_ids, chunk_ids)
        if delete_from_docstore:
            await self._docstore.adelete_ref_doc(ref_doc_id, raise_error=False)
        elif self._chunks_go(False):
            for node_id in chunk_ids:
                await self._docstore.adelete_document(node_id, raise_error=False)

    def refresh_ref_docs(self, documents: Sequence[Any], **update_kwargs: Any) -> list[bool]:
        """``VectorStoreIndex.refresh_ref_docs``; a document the index holds chunks of but no
        hash for (an index built from nodes) is replaced, not inserted a second time."""
        self._replace_unhashed(documents)
        return super().refresh_ref_docs(documents, **update_kwargs)

    async def arefresh_ref_docs(
        self, documents: Sequence[Any], **update_kwargs: Any
    ) -> list[bool]:
        self._replace_unhashed(documents)
        return await super().arefresh_ref_docs(documents, **update_kwargs)

    def _replace_unhashed(self, documents: Sequence[Any]) -> None:
        for document in documents:
            if self._docstore.get_document_hash(document.id_) is None and self._ref_doc_chunks(
                document.id_
            ):
                self.delete_ref_doc(document.id_, delete_from_docstore=True)

    # -- reading --------------------------------------------------------------------------

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:
        """A :class:`WindowRetriever`: the ``similarity_top_k`` best chunks by their best window.

        Other keyword arguments (``filters=``, ``vector_store_query_mode=``, ...) go to the
        ``VectorIndexRetriever`` that fetches the windows.
        """
        top_k = kwargs.pop("similarity_top_k", DEFAULT_SIMILARITY_TOP_K)
        return WindowRetriever(self, similarity_top_k=top_k, **kwargs)

    def as_window_retriever(self, **kwargs: Any) -> BaseRetriever:
        """The plain ``VectorIndexRetriever``: one hit per window, each its chunk (a chunk may
        come more than once)."""
        return super().as_retriever(**kwargs)

    def persist(self, persist_dir: str | os.PathLike[str]) -> None:
        """``storage_context.persist(persist_dir)`` plus ``window_index.json``: the window
        settings and the embed model (its path or hub id, its path relative to ``persist_dir``,
        its dimension and :func:`~llama_index_finetune_embed.embeddings.model_fingerprint`),
        so :func:`load_window_index` loads it and refuses another model."""
        from llama_index_finetune_embed.embeddings import model_fingerprint

        persist_dir = Path(persist_dir)
        self.storage_context.persist(persist_dir=str(persist_dir))
        model_id = _model_id(self._embed_model)
        relative = None
        if model_id is not None and Path(model_id).is_dir():
            relative = os.path.relpath(model_id, persist_dir.resolve())
        atomic_write_json(persist_dir / CONFIG_NAME, {
            "format": 2,
            "embed_model": model_id,
            "embed_model_relative": relative,
            "embed_model_class": type(self._embed_model).__name__,
            "dimension": len(self._embed_model.get_query_embedding("dimension")),
            "fingerprint": model_fingerprint(self._embed_model),
            "window_tokens": self.splitter.tokens,
            "overlap": self.splitter.overlap,
            "long_chunks": self.long_chunks,
        })  # fmt: skip


def _embedded(
    nodes: list[BaseNode], embed_with: Callable[[list[str]], list[list[float]]]
) -> list[BaseNode]:
    """Copies of ``nodes`` with their vectors from ``embed_with`` (e.g. a Ray cluster)."""
    todo = [n for n in nodes if n.embedding is None]
    vectors = iter(embed_with([n.get_content(metadata_mode=MetadataMode.EMBED) for n in todo]))
    out = []
    for node in nodes:
        copy = node.model_copy()
        if node.embedding is None:
            copy.embedding = list(next(vectors))
        out.append(copy)
    return out


def _by_length(nodes: Sequence[BaseNode]) -> list[BaseNode]:
    return sorted(nodes, key=lambda n: -len(n.get_content(metadata_mode=MetadataMode.EMBED)))


def _windowable(node: BaseNode) -> bool:
    """Whether a chunk may be cut into windows (image and index nodes are stored as themselves,
    as LlamaIndex handles them)."""
    return isinstance(node, TextNode) and not isinstance(node, (ImageNode, IndexNode))


def _entries(chunk: BaseNode, texts: list[str]) -> list[BaseNode]:
    """The vector store entries of ``chunk``'s windows: the chunk under each window's id."""
    out = []
    for i, text in enumerate(texts):
        entry = _WindowEntry(
            id_=window_id(chunk.node_id, i),
            metadata={**chunk.metadata, WINDOW_OF: chunk.node_id},
            excluded_embed_metadata_keys=[*chunk.excluded_embed_metadata_keys, WINDOW_OF],
            excluded_llm_metadata_keys=[*chunk.excluded_llm_metadata_keys, WINDOW_OF],
            **carried(chunk),
        )
        entry._embed_text = text
        out.append(entry)
    return out


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
        _check_query(query_bundle)
        fetch, found = self._first_fetch(), None
        while found is None:
            hits = self._windows(fetch).retrieve(query_bundle)  # embeds the query once
            found, fetch = self._top_chunks(hits, fetch), fetch * 4
        return found

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        _check_query(query_bundle)
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
        """Each chunk as the docstore holds it (else as its window's entry carries it; a store
        written with ``&text=once`` keeps the text with the chunk's first window only)."""
        out = []
        for pid, hit in best:
            if WINDOW_OF not in (hit.node.metadata or {}):
                out.append(hit)  # a chunk stored as itself, or mapped to it by the index struct
                continue
            node = self._index.docstore.get_node(pid, raise_error=False)
            out.append(NodeWithScore(node=node or chunk_of(hit.node), score=hit.score))
        textless = [h.node.node_id for h in out if not h.node.get_content()]
        if textless:
            texts = self._index._first_window_texts(textless)
            for hit in out:
                if hit.node.node_id in texts:
                    hit.node.set_content(texts[hit.node.node_id])
        return out


def _check_query(query_bundle: QueryBundle) -> None:
    if query_bundle.embedding is None and not (query_bundle.query_str or "").strip():
        raise ValueError("the query is empty: pass a question (or a QueryBundle with an embedding)")


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
    embed_with: Callable[[list[str]], list[list[float]]] | None = None,
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
        embed_with: what embeds the windows instead of ``embed_model`` (texts -> vectors, the
            document side): e.g. ``RayEmbedder.of(embed_model)``, the windows embedded on a Ray
            cluster (the ``ray`` extra); queries stay with ``embed_model``.
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
        embed_with=embed_with,
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

    ``embed_model`` defaults to the model recorded in ``window_index.json``: the one beside the
    index where it was (a run folder moved or copied whole still loads), else its recorded path
    or hub id. A model other than the one that built the index is refused (its fingerprint
    differs). An index written into a store by URL (``write_window_index``, ``finetune-embed run
    --to-store``) reopens that store by itself; with another vector store of its own, pass
    ``StorageContext.from_defaults(vector_store=store, persist_dir=persist_dir)``.

    Raises:
        FileNotFoundError: a file of the index is missing.
        ValueError: a file is damaged, the storage context holds no index (or several and no
            ``index_id``), or ``embed_model`` is not the model the index was built with.

    Example:
        >>> index = load_window_index("runs/demo/index")  # doctest: +SKIP
        >>> index.as_retriever(similarity_top_k=3).retrieve("Sort a list?")  # doctest: +SKIP
    """
    if persist_dir is None and storage_context is None:
        raise ValueError("pass persist_dir= or storage_context=")
    config = _read_config(persist_dir)
    if storage_context is None:
        folder = Path(persist_dir)  # type: ignore[arg-type]
        url = config.get("vector_store")
        storage_context = _storage_with_store(folder, url) if url else _storage_from(folder)
    if embed_model is None:
        embed_model = _recorded_model(config, persist_dir)
    _check_model(config, embed_model, persist_dir)
    return WindowIndex(
        window_tokens=config.get("window_tokens"),
        overlap=config.get("overlap"),
        long_chunks=config.get("long_chunks", "window"),
        index_struct=_index_struct(storage_context, index_id, persist_dir),
        storage_context=storage_context,
        embed_model=embed_model,
    )


def _read_config(persist_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    if persist_dir is None:
        return {}
    folder = Path(persist_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder the index was saved in")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {folder} was not written by WindowIndex.persist, or the file was "
            "lost. Rebuild the index (build_window_index(nodes, embed_model).persist(folder))"
        )
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is damaged ({exc}): restore it from a copy or rebuild the index"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged (not a JSON object): restore it or rebuild the index")
    return data


def _storage_from(folder: Path) -> StorageContext:
    """``StorageContext.from_defaults(persist_dir=folder)``, with one clear error for a missing
    or damaged file."""
    for name in (*STORE_FILES, VECTOR_FILE):
        if not (folder / name).is_file():
            extra = (
                " (an index whose vectors live in a vector store of its own loads with "
                "storage_context=StorageContext.from_defaults(vector_store=..., persist_dir=...))"
                if name == VECTOR_FILE else ""
            )  # fmt: skip
            raise FileNotFoundError(
                f"{folder / name} is missing: restore it or rebuild the index{extra}"
            )
    try:
        return StorageContext.from_defaults(persist_dir=str(folder))
    except Exception:
        for path in sorted(folder.glob("*.json")):
            _read_json(path)  # raises naming the damaged file
        raise


def _storage_with_store(folder: Path, url: str) -> StorageContext:
    """The record's docstore and index store with the vector store it names (opened with no
    setup: nothing is created; a password comes from the environment)."""
    from llama_index_finetune_embed.serving.stores import open_store

    for name in STORE_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: restore it or rebuild the index")
    store = open_store(url)
    return StorageContext.from_defaults(vector_store=store.vector_store, persist_dir=str(folder))


def _index_struct(storage_context: StorageContext, index_id: str | None, where: Any) -> Any:
    if index_id is not None:
        struct = storage_context.index_store.get_index_struct(index_id)
        if struct is None:
            raise ValueError(f"no index {index_id!r} in the storage context ({where})")
        return struct
    structs = storage_context.index_store.index_structs()
    if len(structs) != 1:
        found = "no index" if not structs else f"{len(structs)} indexes (pass index_id=)"
        raise ValueError(
            f"the storage context holds {found}: pass persist_dir= (the folder "
            "WindowIndex.persist wrote, with index_store.json), or StorageContext.from_defaults("
            "vector_store=..., persist_dir=that folder)"
        )
    return structs[0]


def _recorded_model(config: dict[str, Any], persist_dir: Any) -> Any:
    """The embed model ``window_index.json`` names: beside the index first, else its id."""
    from llama_index_finetune_embed.embeddings import load_embed_model

    relative = config.get("embed_model_relative")
    if relative and persist_dir is not None and (Path(persist_dir) / relative).is_dir():
        return load_embed_model(str((Path(persist_dir) / relative).resolve()))
    if not config.get("embed_model"):
        raise ValueError(
            "this window index does not record its embed model: pass embed_model= (the "
            "model it was built with)"
        )
    return load_embed_model(config["embed_model"])


def _check_model(config: dict[str, Any], embed_model: Any, persist_dir: Any) -> None:
    """Refuse an embed model other than the one that built the index."""
    from llama_index_finetune_embed.embeddings import model_fingerprint

    want, got = config.get("fingerprint"), model_fingerprint(embed_model)
    if not want or got == want:
        return
    got_dim = len(embed_model.get_query_embedding("dimension"))
    raise ValueError(
        f"the index in {persist_dir} was built with another embed model: "
        f"{config.get('embed_model') or config.get('embed_model_class')} (dimension "
        f"{config.get('dimension')}, fingerprint {want}); the one given is "
        f"{_model_id(embed_model) or type(embed_model).__name__} (dimension {got_dim}, "
        f"fingerprint {got}). Its vectors cannot be compared with the "
        "index's: load the index with the model it was built with, or rebuild it with this one"
    )


def _model_id(embed_model: Any) -> str | None:
    """A model id :func:`load_embed_model` can load again: a HuggingFaceEmbedding's path or hub
    id (relative paths made absolute), else ``None``."""
    from llama_index_finetune_embed.embeddings import is_hf_embedding

    if not is_hf_embedding(embed_model):
        return None
    name = str(embed_model.model_name)
    return str(Path(name).resolve()) if Path(name).is_dir() else name
