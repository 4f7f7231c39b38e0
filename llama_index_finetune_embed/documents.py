"""Documents in, chunks out: load files (PDFs via pypdf), split into nodes with stable ids."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import BaseNode, Document

from llama_index_finetune_embed._io import (
    atomic_write_json,
    progress_enabled,
    stable_id,
    text_hash,
)

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

logger = logging.getLogger(__name__)

#: Metadata kept on nodes but left out of the text that is embedded.
_NOT_EMBEDDED = ("file_path", "page_label")

#: File types read by default when a folder is given.
DEFAULT_EXTENSIONS = (".pdf", ".md", ".txt", ".rst", ".html", ".htm")


class PypdfReader(BaseReader):
    """One Document per PDF page, through pypdf; an unreadable PDF gives no pages.

    PDFs encrypted with an empty user password (common for SEC filings, usually AES) are
    decrypted; pypdf needs ``cryptography`` for AES, which the ``pdf`` extra brings. A PDF that
    needs a real password, or that is broken, is skipped with one warning naming the file instead
    of failing the whole run; callers decide whether nothing being left is an error.
    """

    def load_data(
        self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any
    ) -> list[Document]:
        try:
            from pypdf.errors import DependencyError
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "reading PDFs needs pypdf: pip install 'llama-index-finetune-embed[pdf]'"
            ) from exc
        try:
            pages = _pdf_pages(file)
        except DependencyError as exc:  # AES without cryptography (or pycryptodome)
            logger.warning(
                "skipping %s: encrypted PDF; pypdf needs `cryptography` to decrypt it (%s): "
                "pip install 'llama-index-finetune-embed[pdf]'",
                file,
                exc,
            )
            return []
        except Exception as exc:  # pypdf raises many types for broken files
            logger.warning("skipping %s: %s", file, _why_unreadable(exc))
            return []
        docs = []
        for number, text in enumerate(pages, start=1):
            if text.strip():
                metadata = {**(extra_info or {}), "page_label": str(number)}
                docs.append(Document(text=text, metadata=metadata))
        if not docs:
            logger.warning("skipping %s: no extractable text (scanned PDF?)", file)
        return docs


class _PasswordNeeded(Exception):
    """A PDF whose user password is not empty."""


def _pdf_pages(file: Path) -> list[str]:
    """The text of each page; an encrypted PDF is opened with the empty user password."""
    from pypdf import PdfReader

    reader = PdfReader(str(file))
    if reader.is_encrypted and not reader.decrypt(""):
        raise _PasswordNeeded(
            "encrypted PDF that needs a password; save a decrypted copy "
            "(e.g. `qpdf --password=PASSWORD --decrypt in.pdf out.pdf`) and read that"
        )
    return [page.extract_text() or "" for page in reader.pages]


def _why_unreadable(exc: Exception) -> str:
    if isinstance(exc, _PasswordNeeded):
        return str(exc)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"unreadable PDF ({detail})"


def load_documents(
    paths: Sequence[str | os.PathLike[str]],
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    show_progress: bool | None = None,
    num_workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Document]:
    """Load files and folders (recursively) into Documents; PDFs page by page through pypdf.

    Files are parsed in ``num_workers`` processes (default: one per CPU core), largest first,
    with a progress bar in pages/s. With ``cache_dir``, each file's Documents are kept there
    (keyed by path, size and modification time) as it is parsed: a rerun reads them back
    instead of parsing again, and an interrupted load keeps the files it finished.

    Raises:
        FileNotFoundError: a path does not exist, or no readable document was found.

    Example:
        >>> docs = load_documents(["docs/"], cache_dir="runs/x/parsed")  # doctest: +SKIP
    """
    files, _ = find_documents(paths, extensions)
    cache = Path(cache_dir) if cache_dir is not None else None
    per_file = _parse_files(files, num_workers, cache, progress_enabled(show_progress, logger))
    docs = [d for f in files for d in per_file[f] if d.text.strip()]
    for doc in docs:
        # LlamaIndex embeds file_path (an absolute path) and page_label with every chunk: noise
        # that changes when a folder moves, and measured here to hurt transfer (Lyft -> Uber
        # MRR@10 0.596 with it, 0.636 without). Both stay on the node for citations.
        for key in _NOT_EMBEDDED:
            if key not in doc.excluded_embed_metadata_keys:
                doc.excluded_embed_metadata_keys.append(key)
    if not docs:
        raise FileNotFoundError(
            f"no readable text in {len(files)} file(s) under {', '.join(map(str, paths))}"
        )
    return docs


def _parse_files(
    files: list[Path], num_workers: int | None, cache: Path | None, progress: bool
) -> dict[Path, list[Document]]:
    """Each file's Documents: from ``cache`` where it holds them, else parsed (in processes)."""
    from tqdm.auto import tqdm

    out: dict[Path, list[Document]] = {}
    todo = []
    for f in files:
        cached = _read_cached(cache, f) if cache is not None else None
        if cached is None:
            todo.append(f)
        else:
            out[f] = cached
    todo.sort(key=lambda f: -f.stat().st_size)  # largest first: no straggler at the end
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=len(todo), desc="Parsing", unit="file", disable=not progress or not todo)
    pages, start = 0, time.perf_counter()

    def done(f: Path, dicts: list[dict[str, Any]], warnings: list[str]) -> None:
        nonlocal pages
        for message in warnings:
            logger.warning("%s", message)
        out[f] = [Document.from_dict(d) for d in dicts]
        if cache is not None:
            atomic_write_json(_cache_file(cache, f), dicts, indent=None)
        pages += len(dicts)
        bar.set_postfix(pages=pages, per_s=f"{pages / max(time.perf_counter() - start, 1e-9):.1f}")
        bar.update(1)

    try:
        if workers == 1:
            for f in todo:
                done(f, *_parse_one(str(f)))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_parse_one, str(f)): f for f in todo}
                for future in as_completed(futures):
                    done(futures[future], *future.result())
    finally:
        bar.close()
    if todo:
        seconds = time.perf_counter() - start
        logger.info("parsed %d file(s), %d pages/documents in %.1f s (%.1f pages/s, %d process%s)",
                    len(todo), pages, seconds, pages / max(seconds, 1e-9), workers,
                    "es" if workers > 1 else "")  # fmt: skip
    return out


def _parse_one(file: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One file's Documents (as dicts) and the warnings parsing it logged (a worker process)."""
    from llama_index.core import SimpleDirectoryReader

    # Without llama-index-readers-file, core warns once per file; our PDF reader covers PDFs and
    # the other types we read are plain text.
    logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)
    caught = _Caught()
    logger.addHandler(caught)
    try:
        reader = SimpleDirectoryReader(
            input_files=[file], file_extractor={".pdf": PypdfReader()}, errors="replace"
        )
        docs = reader.load_data(show_progress=False)
    finally:
        logger.removeHandler(caught)
    return [d.to_dict() for d in docs], caught.messages


class _Caught(logging.Handler):
    """Keeps the warnings a worker logs, so the parent logs them once, in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _cache_file(cache: Path, file: Path) -> Path:
    stat = file.stat()
    key = text_hash(f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return cache / f"{file.stem[:40]}-{key[:16]}.json"


def _read_cached(cache: Path, file: Path) -> list[Document] | None:
    path = _cache_file(cache, file)
    if not path.is_file():
        return None
    try:
        return [Document.from_dict(d) for d in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, KeyError, TypeError):  # damaged: parse the file again
        return None


def find_documents(
    paths: Sequence[str | os.PathLike[str]], extensions: Sequence[str] = DEFAULT_EXTENSIONS
) -> tuple[list[Path], list[Path]]:
    """Return ``(files to read, binary files skipped)`` for files and folders (recursively).

    A file that is not text (a NUL byte, or over 30% undecodable bytes, in its first 64 KiB) or a
    ``.pdf`` without the PDF signature is skipped with a warning rather than chunked into garbage.

    Raises:
        FileNotFoundError: a path does not exist, or no readable document was found.

    Example:
        >>> files, skipped = find_documents(["docs/"])  # doctest: +SKIP
    """
    files: list[Path] = []
    wanted = {e.lower() for e in extensions}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith(".")
                )
            )
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    skipped = [f for f in files if not _looks_readable(f)]
    for f in skipped:
        logger.warning("skipping %s: binary, not text (a misnamed file?)", f)
    files = [f for f in files if f not in skipped]
    if not files:
        found = f"only {len(skipped)} binary file(s) " if skipped else "no documents "
        raise FileNotFoundError(
            f"{found}found in {', '.join(map(str, paths))} "
            f"(looked for {', '.join(sorted(wanted))} text or PDF files)"
        )
    return files, skipped


def _looks_readable(path: Path) -> bool:
    """PDF magic for PDFs; otherwise text: no NUL byte and few bytes that are not characters
    (a Latin-1 file with some accents passes, random bytes do not)."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if path.suffix.lower() == ".pdf":
        return b"%PDF-" in head[:1024]
    if b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    junk = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
    return junk <= 0.3 * max(1, len(text))


def stdlib_documents() -> list[Document]:
    """The Python language reference topics shipped with every Python (``pydoc_data.topics``).

    A real, offline corpus of about 465 kB: the demo's default when no documents are given.
    """
    from pydoc_data.topics import topics

    return [
        Document(text=text, metadata={"topic": name}, id_=stable_id("pydoc_data.topics", name))
        for name, text in sorted(topics.items())
    ]


def chunk_documents(
    documents: Sequence[Document],
    *,
    chunk_size: int = 512,
    chunk_overlap: int = 64,
    min_chars: int = 100,
) -> list[TextNode]:
    """Split documents with LlamaIndex's ``SentenceSplitter``; node ids depend only on content.

    LlamaIndex gives nodes random ids; ours are derived from the source and the text, so a rerun
    over the same files yields the same ids (and the generation cache and split stay valid).
    Chunks shorter than ``min_chars`` (headers, page numbers) are dropped.

    Example:
        >>> nodes = chunk_documents(stdlib_documents(), chunk_size=512)
        >>> len(nodes) > 100
        True
    """
    from llama_index.core.node_parser import SentenceSplitter

    if chunk_overlap >= chunk_size:
        raise ValueError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})"
        )
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    nodes = splitter.get_nodes_from_documents(list(documents))
    kept: list[TextNode] = []
    seen: set[str] = set()
    for node in nodes:
        text = node.get_content()
        if len(text.strip()) < min_chars:
            continue
        meta = node.metadata
        source = str(meta.get("file_name") or meta.get("topic") or node.ref_doc_id)
        node_id = stable_id(source, str(node.metadata.get("page_label", "")), text_hash(text))
        if node_id in seen:  # the same text twice in one source: keep it once
            continue
        seen.add(node_id)
        node.id_ = node_id
        kept.append(node)
    return kept


def sample_chunks(
    nodes: Sequence[BaseNode], max_chunks: int | None, *, seed: int = 0
) -> list[BaseNode]:
    """At most ``max_chunks`` nodes, drawn at random (deterministic for a seed), in their order.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> nodes = [TextNode(text=str(i)) for i in range(10)]
        >>> [n.text for n in sample_chunks(nodes, 3, seed=0)]
        ['0', '6', '9']
    """
    if not max_chunks or len(nodes) <= max_chunks:
        return list(nodes)
    keep = set(random.Random(seed).sample(range(len(nodes)), max_chunks))
    return [n for i, n in enumerate(nodes) if i in keep]
