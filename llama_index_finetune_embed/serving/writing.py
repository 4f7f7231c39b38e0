"""Writing a window index into a vector store named by URL: batched, resumable, never over another.

:func:`write_window_index` cuts each chunk into the windows ``build_window_index`` stores for it,
asks the store which of those ids it holds already, embeds only the others and adds them
(``BasePydanticVectorStore.add``, the windows of :data:`~.stores.WRITE_BATCH` chunks a call).
Memory stays flat in the corpus size: chunks are read from an iterable one batch at a time and
nothing is kept.
An interrupted write, run again, embeds and adds exactly what is missing (no duplicate, no gap);
a table or collection that exists and was not started from the same ``persist_dir`` is refused,
so another index (the user's own, the source of a run) is never written to.

A window's entry holds its chunk's text by default, so any reader of the store (LlamaIndex's own
``VectorStoreIndex.from_vector_store`` included) gets whole chunks back, at the cost of the text
once per window. A URL with ``&text=once`` stores the text with each chunk's first window only
(27% less PostgreSQL table on 1,024-token chunks, docs/results.md): this package's retriever
and ``index_nodes`` fetch it from there; a plain ``from_vector_store`` retriever then
returns the chunk's text for a hit on its first window and an empty text for a hit on another.

``persist_dir`` gets the record that :func:`~.index.load_window_index` reopens the index from:
``window_index.json`` (the model, the window settings, the store's URL without any password)
and LlamaIndex's own (empty) docstore and index store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from llama_index.core.schema import BaseNode, MetadataMode

from llama_index_finetune_embed._io import atomic_write_json, progress_enabled
from llama_index_finetune_embed.serving import stores
from llama_index_finetune_embed.serving.index import CONFIG_NAME, LongChunks, WindowIndex
from llama_index_finetune_embed.serving.stores import Store, StoreURL, open_store
from llama_index_finetune_embed.serving.windows import WINDOW_OF, window_id

logger = logging.getLogger(__name__)

#: Beside the index record: which store this folder started writing (read before any write).
WRITING_NAME = "store_write.json"


@dataclass(frozen=True)
class WriteStats:
    """What one :func:`write_window_index` call did."""

    url: str  # the store, without password
    chunks: int
    entries: int  # vectors the store holds for these chunks
    written: int  # entries this call embedded and added
    seconds: float  # in all
    index_seconds: float = 0.0  # of which building the store's search index (pgvector HNSW)


def write_window_index(
    nodes: Iterable[BaseNode],
    embed_model: Any,
    url: str | StoreURL,
    persist_dir: str | os.PathLike[str],
    *,
    long_chunks: LongChunks = "window",
    window_tokens: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    total: int | None = None,
    show_progress: bool | None = None,
    embed_with: Callable[[list[str]], Any] | None = None,
) -> WriteStats:
    """Write ``nodes`` as a window index into the store ``url`` names; record it in
    ``persist_dir`` (``load_window_index(persist_dir)`` reopens it).

    Args:
        nodes: the chunks, any iterable (a generator keeps memory flat).
        embed_model: the model that reads the windows (and later the queries).
        url: the table or collection to write (``parse_store_url`` forms); created on first
            write. One that exists and was not started from ``persist_dir`` is refused.
        persist_dir: where the record goes.
        long_chunks, window_tokens, overlap: as :func:`~.index.build_window_index`.
        batch_size: chunks per step, their windows one ``add`` call (default
            :data:`~.stores.WRITE_BATCH`).
        total: how many chunks ``nodes`` holds (for the progress bar).
        embed_with: texts -> vectors instead of ``embed_model`` (e.g. a ``RayEmbedder``).

    Raises:
        ValueError: the store exists and was not written from ``persist_dir``.

    Example:
        >>> stats = write_window_index(nodes, embed_model,
        ...     "postgresql://me@localhost:5432/rag?table=chunks_finetuned", "runs/x/index")
        ... # doctest: +SKIP
        >>> index = load_window_index("runs/x/index")  # doctest: +SKIP
    """
    from llama_index.core import StorageContext

    started, folder = time.perf_counter(), Path(persist_dir)
    dim = len(embed_model.get_query_embedding("dimension"))
    store = open_store(url, write=True, dim=dim)
    try:
        _claim(store, folder)
        store.prepare_write()
        index = WindowIndex(
            [], storage_context=StorageContext.from_defaults(vector_store=store.vector_store),
            embed_model=embed_model, long_chunks=long_chunks, window_tokens=window_tokens,
            overlap=overlap,
        )  # fmt: skip
        chunks = entries = written = 0
        bar = _bar(total, show_progress)
        for batch in _batched(nodes, batch_size or stores.WRITE_BATCH):
            cut = index._cut(batch)
            if store.url.text_once:
                _text_with_first_window_only(cut)
            written += _add_missing(store, cut, embed_model, embed_with)
            chunks, entries = chunks + len(batch), entries + len(cut)
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(written=written)
        if bar is not None:
            bar.close()
        indexing = time.perf_counter()
        store.finish()
        indexing = time.perf_counter() - indexing
        index.persist(folder)
        _record_store(folder, store.url)
    finally:
        store.close()
    stats = WriteStats(store.url.redacted, chunks, entries, written,
                       time.perf_counter() - started, indexing)  # fmt: skip
    logger.info(
        "%s: %d chunks, %d vectors (%d written now, %d there already) in %.0f s",
        stats.url, chunks, entries, written, entries - written, stats.seconds,
    )  # fmt: skip
    return stats


def _claim(store: Store, folder: Path) -> None:
    """Refuse a store that exists and was not started from ``folder``; record that it is."""
    mine = _recorded_url(folder) == store.url.redacted
    if store.existed and not mine:
        raise ValueError(
            f"{store.url.redacted} exists and was not written from {folder}: name a new "
            f"{'table' if store.url.kind == 'postgres' else 'collection'} (this job never "
            "writes into one it did not create, such as your index or the run's source)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if not mine:
        atomic_write_json(folder / WRITING_NAME, {"vector_store": store.url.redacted})


def recorded_store(folder: str | os.PathLike[str]) -> str | None:
    """The store (URL without password) that ``folder`` started writing, or None."""
    return _recorded_url(Path(folder))


def _recorded_url(folder: Path) -> str | None:
    import json

    path = folder / WRITING_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("vector_store")
    except (OSError, ValueError, AttributeError):
        return None


def _record_store(folder: Path, url: StoreURL) -> None:
    """Add the store's URL to ``window_index.json`` (what ``load_window_index`` opens)."""
    import json

    path = folder / CONFIG_NAME
    config = json.loads(path.read_text(encoding="utf-8"))
    config["vector_store"] = url.redacted
    atomic_write_json(path, config)


def _add_missing(
    store: Store, entries: list[BaseNode], embed_model: Any, embed_with: Any
) -> int:
    """Embed and add the entries the store does not hold yet; how many were added."""
    have = store.present([e.node_id for e in entries])
    todo = [e for e in entries if e.node_id not in have]
    if not todo:
        return 0
    texts = [e.get_content(metadata_mode=MetadataMode.EMBED) for e in todo]
    if embed_with is not None:
        vectors = embed_with(texts)
    else:
        vectors = embed_model.get_text_embedding_batch(texts)
    for entry, vector in zip(todo, vectors, strict=True):
        entry.embedding = [float(x) for x in vector]
    store.vector_store.add(todo)
    return len(todo)


def _text_with_first_window_only(entries: list[BaseNode]) -> None:
    """``&text=once``: a chunk's text goes with its first window's entry only (the others keep
    their metadata and window text to embed, and store an empty text)."""
    for entry in entries:
        chunk_id = (entry.metadata or {}).get(WINDOW_OF)
        if chunk_id and entry.node_id != window_id(chunk_id, 0):
            entry.set_content("")


def _batched(nodes: Iterable[BaseNode], size: int) -> Iterator[list[BaseNode]]:
    it = iter(nodes)
    while batch := list(islice(it, size)):
        yield batch


def _bar(total: int | None, show: bool | None) -> Any:
    if not progress_enabled(show, logger):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="writing the index", unit="chunk")
