"""Stage 1, chunks: the job's source (files, an existing index, a vector store) -> chunks.

Files (``--docs``, or without any the stdlib's pydoc topics) are parsed once each (kept in
``DIR/parsed``, so other chunk settings do not parse again), chunked and sampled with the run's
seed. An existing index (``--from-index`` persist dir, ``--from-store`` URL) gives its own chunks
as they are (``serving.index_nodes``: ids, text, metadata, relationships; never re-chunked),
sampled only with ``--max-chunks``. Writes ``DIR/chunks.json`` (no vectors; a JSON list, one
chunk a line) and fills ``job.nodes`` with a :class:`ChunkFile` over it: later stages read the
chunks they need from the file, so no stage after this one holds every chunk in memory. Its
fingerprint holds each file's size and modification time (the persist dir's files; a store's
URL) and the package version.
"""

from __future__ import annotations

import json
import platform
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from llama_index_finetune_embed._io import atomic_open
from llama_index_finetune_embed._version import __version__
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import Job, _pick

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode


def chunks_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    source = check_source(config)
    if source is None:
        return {
            "documents": documents_inputs(list(config.docs)),
            **_pick(config, "chunk_size", "chunk_overlap", "max_chunks", "seed"),
            "package version": __version__,
        }
    return {"index": source_inputs(config), **_pick(config, "max_chunks", "seed"),
            "package version": __version__}  # fmt: skip


def check_source(config: RunConfig) -> str | None:
    """The existing index the job reads (``--from-index`` path or ``--from-store`` URL; None for
    files), or one ValueError for a combination that cannot be meant."""
    given = [f for f in ("from_index", "from_store") if getattr(config, f)]
    if len(given) == 2:
        raise ValueError("give --from-index or --from-store, not both")
    if given and config.docs:
        raise ValueError(
            f"--{given[0].replace('_', '-')} reads the chunks of an existing index: give no "
            "documents with it (their chunks are the index's)"
        )
    if config.to_store and config.from_store:
        from llama_index_finetune_embed.serving import parse_store_url

        if parse_store_url(config.to_store).redacted == parse_store_url(config.from_store).redacted:
            raise ValueError(
                "--to-store names the source store: the job never writes into its source; "
                "name a new table or collection"
            )
    if config.from_index:
        return str(Path(config.from_index).expanduser().resolve())
    return config.from_store


def source_inputs(config: RunConfig) -> dict[str, Any]:
    """What an index source is: a persist dir's files (path -> [size, mtime_ns]) or a store's
    URL without password (a store changed in place is read again with ``--restart chunks``)."""
    if config.from_store:
        from llama_index_finetune_embed.serving import parse_store_url

        return {"store": parse_store_url(config.from_store).redacted}
    folder = Path(config.from_index or "").expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"--from-index {folder}: no such folder (a LlamaIndex persist dir)")
    return {str(f): [f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(folder.glob("*.json"))}  # fmt: skip


def documents_inputs(paths: list[str]) -> dict[str, Any]:
    """Every file the run reads (resolved path -> [size, mtime_ns]), or the stdlib corpus."""
    if not paths:
        return {"stdlib pydoc topics": platform.python_version()}
    from llama_index_finetune_embed.documents import find_documents

    files, skipped = find_documents(paths)
    out: dict[str, Any] = {}
    for f in files + skipped:
        stat = f.stat()
        out[str(f.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return out


def chunks_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "chunks.json",)


def make_chunks(job: Job) -> dict[str, Any]:
    nodes, info = read_chunks(job.config, parsed=job.out / "parsed")
    job.nodes = ChunkFile.write(job.out / "chunks.json", nodes)
    return info


def read_chunks(
    config: RunConfig, *, parsed: Path | None = None
) -> tuple[list[TextNode], dict[str, Any]]:
    """The run's chunks (documents loaded in parallel, chunked, sampled) and what the ledger
    records; ``parsed``: where each file's parse is kept (a rerun with other chunk settings
    does not parse again)."""
    from llama_index_finetune_embed.documents import (
        chunk_documents,
        find_documents,
        load_documents,
        sample_chunks,
        stdlib_documents,
    )

    source = check_source(config)
    if source is not None:
        return _index_chunks(source, config)
    skipped = find_documents(config.docs)[1] if config.docs else []
    docs = load_documents(config.docs, cache_dir=parsed) if config.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"only {len(nodes)} chunk(s) of text found; need at least 2 to split")
    return nodes, {"documents": len(docs), "chunks": len(nodes), "skipped_files": len(skipped)}


def _index_chunks(source: str, config: RunConfig) -> tuple[list[TextNode], dict[str, Any]]:
    """An existing index's chunks as it holds them, sampled only with ``max_chunks``."""
    from llama_index_finetune_embed.documents import sample_chunks
    from llama_index_finetune_embed.serving import index_nodes

    nodes = index_nodes(source)
    total = len(nodes)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"the index holds {len(nodes)} chunk(s); need at least 2 to split")
    return nodes, {"documents": len({n.ref_doc_id for n in nodes}), "chunks": len(nodes),
                   "index chunks": total, "skipped_files": 0}  # fmt: skip


def load_chunks(job: Job, record: dict[str, Any]) -> None:
    job.nodes = ChunkFile(job.out / "chunks.json")


class ChunkFile(Sequence["TextNode"]):
    """The chunks of ``DIR/chunks.json``, read from the file as they are used: in memory it holds
    one offset per chunk (8 bytes), so a stage that streams the chunks (the index stage's store
    write) uses the same memory for 10k chunks as for 100k. ``select(ids)`` is a view of some of
    them in file order (``views(train_ids, val_ids)``: the split's two sides in one read).

    The file is a JSON list with one chunk a line, so ``json.load`` still reads it whole; a file
    with the list on one line (by 0.3.0 and earlier) is read into memory once.

    Example:
        >>> import pathlib, tempfile
        >>> from llama_index.core.schema import TextNode
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "chunks.json"
        >>> chunks = ChunkFile.write(path, [TextNode(id_=str(i), text=f"c{i}") for i in range(3)])
        >>> len(chunks), chunks[2].text, [n.node_id for n in chunks.select({"0", "2"})]
        (3, 'c2', ['0', '2'])
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._whole: list[TextNode] | None = None
        self._offsets = array("q")
        with open(self.path, "rb") as fh:
            if fh.readline().strip() != b"[":  # the older layout: the whole list on one line
                self._whole = [_node(d) for d in json.loads(self.path.read_bytes())]
                self._offsets.extend(range(len(self._whole)))
                return
            while True:
                at, line = fh.tell(), fh.readline()
                if not line or line.strip() == b"]":
                    break
                self._offsets.append(at)

    @classmethod
    def write(cls, path: Path, nodes: Iterable[TextNode]) -> ChunkFile:
        """Write ``nodes`` to ``path`` atomically, one chunk a line; read them back from there."""
        with atomic_open(path) as fh:
            fh.write("[")
            for i, node in enumerate(nodes):
                fh.write(",\n"[i == 0 :] + json.dumps(node.to_dict(), ensure_ascii=False))
            fh.write("\n]\n")
        return cls(path)

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> TextNode: ...
    @overload
    def __getitem__(self, i: slice) -> list[TextNode]: ...
    def __getitem__(self, i: int | slice) -> TextNode | list[TextNode]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return next(self._read([self._offsets[i]]))

    def __iter__(self) -> Iterator[TextNode]:
        return self._read(self._offsets)

    def _read(self, offsets: Iterable[int]) -> Iterator[TextNode]:
        if self._whole is not None:
            yield from (self._whole[at] for at in offsets)
            return
        with open(self.path, "rb") as fh:
            for at in offsets:
                fh.seek(at)
                yield _node(json.loads(fh.readline().rstrip().rstrip(b",")))

    def select(self, ids: Iterable[str]) -> ChunkFile:
        """The chunks with these ids, in file order: a view over the same file."""
        return self.views(ids)[0]

    def views(self, *id_sets: Iterable[str]) -> list[ChunkFile]:
        """One :meth:`select` per id set, all from one read of the ids (the split's sides)."""
        wanted = [set(ids) for ids in id_sets]
        views = []
        for _ in wanted:
            view = ChunkFile.__new__(ChunkFile)
            view.path, view._whole, view._offsets = self.path, self._whole, array("q")
            views.append(view)
        for at, node_id in zip(self._offsets, self._ids(), strict=True):
            for ids, view in zip(wanted, views, strict=True):
                if node_id in ids:
                    view._offsets.append(at)
        return views

    def _ids(self) -> Iterator[str]:
        if self._whole is not None:
            yield from (self._whole[at].node_id for at in self._offsets)
            return
        with open(self.path, "rb") as fh:
            for at in self._offsets:
                fh.seek(at)
                yield json.loads(fh.readline().rstrip().rstrip(b","))["id_"]


def _node(data: dict[str, Any]) -> TextNode:
    from llama_index.core.schema import TextNode

    return TextNode.from_dict(data)
