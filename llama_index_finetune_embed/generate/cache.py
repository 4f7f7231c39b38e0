"""The resume cache of question generation: append-only JSONL, one fsync'd line per finished chunk.

Line 1 is a header fingerprinting the run settings (prompt, model, questions per chunk, metadata
mode); each later line is one finished chunk keyed by node id and text hash. A torn last line
(kill -9 mid-write) is ignored and cut off before appending. Private module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from llama_index_finetune_embed._io import (
    append_jsonl,
    atomic_write_text,
    read_jsonl,
    text_hash,
    truncate_torn_tail,
)

FORMAT = "llama-index-finetune-embed/qa-generation-cache"
VERSION = 1


def cache_fingerprint(
    template: str, model: str, num_questions: int, mode: str, passage_words: int | None = None
) -> dict[str, Any]:
    """The settings a cache belongs to; a cache with other settings is refused, not mixed in.

    ``passage_words`` (how long chunks were cut for the writer) is recorded only when set, so a
    cache written before passages existed still matches a run that reads chunks whole."""
    fingerprint = {
        "prompt_sha256": text_hash(template),
        "model": model,
        "num_questions_per_chunk": num_questions,
        "metadata_mode": mode,
    }
    if passage_words is not None:
        fingerprint["passage_words"] = passage_words
    return fingerprint


class ResumeCache:
    """An open cache file: ``done`` (node id -> questions) and ``positions`` (node id -> where
    each question was written from, when recorded) read back, ``append`` for new chunks.

    Example:
        >>> cache = ResumeCache.open("pairs.jsonl", fingerprint, texts)  # doctest: +SKIP
        >>> cache.append("node-1", text_hash(texts["node-1"]), ["Who?"], "llm", 1)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: Path,
        fh: IO[str],
        done: dict[str, list[str]],
        positions: dict[str, list[dict[str, int]]] | None = None,
    ) -> None:
        self.path, self._fh, self.done = path, fh, done
        self.positions = positions if positions is not None else {}

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], fingerprint: dict[str, Any], texts: Mapping[str, str]
    ) -> ResumeCache:
        """Open (or create) ``path`` for the nodes whose rendered ``texts`` are given.

        Raises:
            ValueError: another process holds the cache, it was written with other settings,
                or it holds chunks that are not among ``texts`` (another set of nodes).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        try:
            _lock(fh, path)
            truncate_torn_tail(path)
            records = _read_done(path, fingerprint, texts)
            if records is None:  # a new file
                append_jsonl(fh, {"type": "header", "format": FORMAT, "version": VERSION,
                                  "fingerprint": fingerprint})  # fmt: skip
                records = {}
        except BaseException:
            fh.close()
            raise
        done = {nid: [str(q) for q in r["questions"]] for nid, r in records.items()}
        positions = {nid: r["positions"] for nid, r in records.items() if _positions_ok(r)}
        return cls(path, fh, done, positions)

    def append(
        self,
        node_id: str,
        text_sha256: str,
        questions: list[str],
        source: str,
        attempts: int,
        positions: list[dict[str, int]] | None = None,
    ) -> None:
        """Write one finished chunk (flushed and fsync'd before returning)."""
        record = {"type": "chunk", "node_id": node_id, "text_sha256": text_sha256,
                  "questions": questions, "source": source, "attempts": attempts}  # fmt: skip
        if positions is not None:
            record["positions"] = positions
            self.positions[node_id] = positions
        append_jsonl(self._fh, record)
        self.done[node_id] = questions

    def close(self) -> None:
        self._fh.close()  # also releases the lock


def cached_node_ids(path: Path, fingerprint: dict[str, Any], texts: Mapping[str, str]) -> set[str]:
    """The node ids a cache file already holds questions for, read without writing or locking
    (for estimates); the same checks as :meth:`ResumeCache.open`."""
    return set(_read_done(path, fingerprint, texts) or {})


def _read_done(
    path: Path, fingerprint: dict[str, Any], texts: Mapping[str, str]
) -> dict[str, dict[str, Any]] | None:
    """node id -> chunk record a cache file holds, its header and chunks checked (None: empty)."""
    records = list(read_jsonl(path))
    if not records:
        return None
    _check_header(path, records[0], fingerprint)
    return _finished_chunks(path, records[1:], texts)


def _lock(fh: IO[str], path: Path) -> None:
    """Refuse a cache another running generation is appending to (POSIX advisory lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; one writer per cache is documented
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ValueError(
            f"cache {path} is in use by another running generation; wait for it to finish or "
            "pass a different cache_path"
        ) from None


def _check_header(path: Path, header: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a question-generation cache (its first line is not our header); "
            "pass a different cache_path"
        )
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: cache format version {header.get('version')} is not supported")
    old = header.get("fingerprint") or {}
    diffs = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in fingerprint.items() if old.get(k) != v]
    if diffs:
        raise ValueError(
            f"cache {path} was written with different settings ({'; '.join(diffs)}); refusing to "
            "mix its questions in. Pass a different cache_path, or delete the file to start over"
        )


def _positions_ok(record: dict[str, Any]) -> bool:
    """Whether a chunk record carries one position per question."""
    spots = record.get("positions")
    return isinstance(spots, list) and len(spots) == len(record["questions"])


def _finished_chunks(
    path: Path, records: list[dict[str, Any]], texts: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """node id -> record of the cached chunks, each checked against the given nodes."""
    hashes: dict[str, str] = {}
    done: dict[str, dict[str, Any]] = {}
    for record in records:
        nid, questions = record.get("node_id"), record.get("questions")
        if record.get("type") != "chunk" or not isinstance(questions, list):
            raise ValueError(f"{path}: malformed cache line {record!r:.120}")
        if nid not in texts:
            raise ValueError(
                f"cache {path} holds questions for node {nid!r}, which is not among the "
                f"{len(texts)} nodes given: the cache belongs to another set of nodes (e.g. the "
                "training split). Use one cache_path per set of nodes"
            )
        if record.get("text_sha256") != hashes.setdefault(nid, text_hash(texts[nid])):
            raise ValueError(
                f"cache {path}: the text of node {nid!r} differs from when it was cached (the "
                "document or metadata_mode changed). Use a new cache_path, or delete the file"
            )
        done.setdefault(nid, record)  # a repeated line: the first wins
    return done


def carry_over(
    sources: Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    texts: Mapping[str, str],
) -> int:
    """Start a new cache ``target`` from earlier ones: every chunk whose node is among ``texts``
    with the same text, from caches written with the settings of the first readable source.

    So a new set of nodes (edited documents, another split) asks the LLM again only for the
    chunks that changed. Returns how many chunks were carried over (0 if ``target`` exists).

    Example:
        >>> old = sorted(Path("cache").glob("train-*.jsonl"))  # doctest: +SKIP
        >>> carry_over(old, "cache/train-new.jsonl", texts)  # doctest: +SKIP
        12
    """
    target = Path(target)
    if target.exists():
        return 0
    header: dict[str, Any] | None = None
    keep: dict[str, dict[str, Any]] = {}
    for source in sources:
        try:
            records = list(read_jsonl(source))
        except (OSError, ValueError):
            continue  # unreadable: nothing to carry from it
        if not records or records[0].get("type") != "header":
            continue
        if header is None:
            header = records[0]
        elif records[0].get("fingerprint") != header.get("fingerprint"):
            continue
        for record in records[1:]:
            nid = record.get("node_id")
            if (record.get("type") == "chunk" and nid in texts and nid not in keep
                    and record.get("text_sha256") == text_hash(texts[nid])):  # fmt: skip
                keep[nid] = record
    if header is None:
        return 0
    lines = [header, *keep.values()]
    atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    return len(keep)
