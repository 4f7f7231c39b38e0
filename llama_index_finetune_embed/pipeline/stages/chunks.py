"""Stage 1, chunks: documents -> chunks, sampled down to ``max_chunks``.

Reads every file under ``--docs`` (or, without any, the stdlib's pydoc topics), parses each once
(kept in ``DIR/parsed``, so other chunk settings do not parse again), chunks and samples them with
the run's seed, writes ``DIR/chunks.json`` and fills ``job.nodes``; its fingerprint includes each
file's size and modification time and the package version.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._io import atomic_write_json
from llama_index_finetune_embed._version import __version__
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import Job, _pick

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode


def chunks_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return {
        "documents": documents_inputs(list(config.docs)),
        **_pick(config, "chunk_size", "chunk_overlap", "max_chunks", "seed"),
        "package version": __version__,
    }


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
    atomic_write_json(job.out / "chunks.json", [n.to_dict() for n in nodes], indent=None)
    job.nodes = nodes
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

    skipped = find_documents(config.docs)[1] if config.docs else []
    docs = load_documents(config.docs, cache_dir=parsed) if config.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"only {len(nodes)} chunk(s) of text found; need at least 2 to split")
    return nodes, {"documents": len(docs), "chunks": len(nodes), "skipped_files": len(skipped)}


def load_chunks(job: Job, record: dict[str, Any]) -> None:
    from llama_index.core.schema import TextNode

    data = json.loads((job.out / "chunks.json").read_text(encoding="utf-8"))
    job.nodes = [TextNode.from_dict(d) for d in data]
