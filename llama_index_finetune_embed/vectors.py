"""Document vectors kept on disk by model and text: one embedding per (model, text) per folder.

:class:`VectorCache` is a folder with one subfolder per model (its :func:`model_key`: the
weights' fingerprint, the dtype they run in, the length it reads, its prompts). ``embedder(model)``
is a texts -> vectors callable (the ``embed_with=`` that ``RetrievalEvaluator``,
``build_window_index`` and ``write_window_index`` take) that embeds only the texts the folder does
not hold yet and adds them as one more shard file, written atomically under a unique name: runs
that share a folder (the canary's, in the user's cache dir) never clobber each other's shards,
and a shard that vanishes under a reader (pruned) is embedded again, never an error.

Example:
    >>> from llama_index_finetune_embed.embeddings import load_embed_model
    >>> cache = VectorCache("runs/x/vectors")  # doctest: +SKIP
    >>> embed = cache.embedder(load_embed_model("local:all-MiniLM-L6-v2"))  # doctest: +SKIP
    >>> vectors = embed(["a chunk", "another chunk"])  # doctest: +SKIP
    >>> cache.embedded, cache.reused  # doctest: +SKIP
    (2, 0)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llama_index_finetune_embed._io import atomic_open, text_hash

logger = logging.getLogger(__name__)

Embedder = Callable[[list[str]], Any]


def model_key(model: Any) -> str:
    """What a model's document vectors depend on, as a short hash: ``model_fingerprint`` (class,
    prompts, weights), the dtype its weights run in and the tokens it reads (``max_length``).
    Two loads of one model in one precision share a key; a finetuned copy, the same weights in
    another dtype or with another length do not."""
    from llama_index_finetune_embed.embeddings import _torch_modules, model_fingerprint

    digest = hashlib.sha256(model_fingerprint(model).encode())
    for module in _torch_modules(model):
        param = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
        digest.update(f"dtype={getattr(param, 'dtype', None)};".encode())
    for name in ("max_length", "long_texts", "window_tokens", "dimensions"):
        digest.update(f"{name}={getattr(model, name, None)!r};".encode())
    return digest.hexdigest()[:20]


#: Vectors per shard file: a lookup reads only the rows it needs (memory-mapped), and memory
#: stays flat in the corpus (an index stage over 100k chunks holds no cache in memory).
SHARD_ROWS = 4096


class VectorCache:
    """Document vectors by model and text, in ``folder`` (see the module's docstring).

    A shard is two files, ``NAME.npy`` (float32 vectors) and ``NAME.hashes.npy`` (the texts'
    hashes, written last: a shard without it is unfinished and not read). In memory: 32 bytes a
    cached text (its hash), per model looked up. ``embedded`` and ``reused`` count the texts
    embedded and found over every embedder of this cache; ``max_models``: keep the folders of
    the most recently used models only (older ones are removed when the cache is opened).
    """

    def __init__(self, folder: str | os.PathLike[str], *, max_models: int | None = None) -> None:
        self.folder = Path(folder)
        self.embedded = 0
        self.reused = 0
        self._shards: dict[str, dict[Path, np.ndarray]] = {}  # key -> vectors file -> hashes
        if max_models is not None:
            self._prune(max_models)

    def embedder(
        self,
        model: Any,
        embed_with: Embedder | None = None,
        *,
        side: str = "text",
        show_progress: bool = False,
        keep: bool = True,
    ) -> Embedder:
        """``texts -> vectors`` for ``model``, as ``embed_with`` (else the model's
        ``get_text_embedding_batch``) gives them, embedding only texts this cache lacks.
        ``side="query"`` keeps query vectors apart (give the query path as ``embed_with``);
        ``keep=False``: look up, but do not add what is embedded (a last reader such as the
        index stage, whose vectors are kept by the index itself)."""
        if side not in ("text", "query"):
            raise ValueError(f"side must be 'text' or 'query', got {side!r}")
        key = model_key(model) + ("-query" if side == "query" else "")

        def embed(texts: list[str]) -> list[list[float]]:
            return self._embed(key, model, embed_with, list(texts), show_progress, keep)

        return embed

    def counts(self) -> dict[str, int]:
        """``{"texts embedded": ..., "vectors reused": ...}`` so far (what a stage records)."""
        return {"texts embedded": self.embedded, "vectors reused": self.reused}

    def _embed(
        self, key: str, model: Any, embed_with: Embedder | None, texts: list[str],
        progress: bool, keep: bool,
    ) -> list[list[float]]:  # fmt: skip
        hashes = [_hash(t) for t in texts]
        found = self._lookup(key, set(hashes))
        todo: dict[bytes, str] = {}
        for h, text in zip(hashes, texts, strict=True):
            if h not in found and h not in todo:
                todo[h] = text
        if todo:
            batch = list(todo.values())
            if embed_with is not None:
                fresh = embed_with(batch)
            else:
                fresh = model.get_text_embedding_batch(batch, show_progress=progress)
            fresh = np.asarray(fresh, dtype=np.float32)
            if keep:
                self._write(key, list(todo), fresh)
            found.update(zip(todo, fresh, strict=True))
        self.embedded += len(todo)
        self.reused += len(texts) - len(todo)
        return [found[h].tolist() for h in hashes]

    def _lookup(self, key: str, wanted: set[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of ``wanted`` hashes (read from memory-mapped shards)."""
        shards = self._shards.setdefault(key, {})
        folder = self.folder / key
        for path in sorted(folder.glob("*.hashes.npy")) if folder.is_dir() else []:
            vectors = path.with_name(path.name.removesuffix(".hashes.npy") + ".npy")
            if vectors not in shards:
                try:
                    shards[vectors] = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as exc:  # pruned or damaged: embed again
                    logger.warning("vector cache: %s not read (%s)", path, exc)
                    shards[vectors] = np.empty(0, dtype="S32")
        found: dict[bytes, np.ndarray] = {}
        if not wanted:
            return found
        asked = np.asarray(sorted(wanted), dtype="S32")
        for vectors, have in shards.items():
            rows = np.nonzero(np.isin(have, asked))[0]
            if not rows.size:
                continue
            try:
                block = np.asarray(np.load(vectors, mmap_mode="r", allow_pickle=False)[rows])
            except (OSError, ValueError, IndexError) as exc:
                logger.warning("vector cache: %s not read (%s)", vectors, exc)
                continue
            found.update(zip(have[rows].tolist(), block, strict=True))
        return found

    def _write(self, key: str, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        folder = self.folder / key
        try:
            for at in range(0, len(hashes), SHARD_ROWS):
                name = uuid.uuid4().hex
                with atomic_open(folder / f"{name}.npy", "wb") as fh:
                    np.save(fh, vectors[at : at + SHARD_ROWS])
                with atomic_open(folder / f"{name}.hashes.npy", "wb") as fh:  # last: complete
                    np.save(fh, np.asarray(hashes[at : at + SHARD_ROWS], dtype="S32"))
            os.utime(folder)  # the model's last use, for max_models
        except OSError as exc:  # a full or read-only disk costs a re-embedding later, no more
            logger.warning("vector cache: %s not written (%s)", folder, exc)

    def _prune(self, keep: int) -> None:
        if not self.folder.is_dir():
            return
        models = sorted((p for p in self.folder.iterdir() if p.is_dir()),
                        key=lambda p: p.stat().st_mtime, reverse=True)  # fmt: skip
        for old in models[keep:]:
            shutil.rmtree(old, ignore_errors=True)


def _hash(text: str) -> bytes:
    """The first 128 bits of the text's sha256 (``text_hash``), as the shards store them."""
    return text_hash(text)[:32].encode()


def user_cache_dir() -> Path:
    """Where vectors shared by runs live (the canary's): ``$LLAMA_INDEX_FINETUNE_EMBED_CACHE``,
    else ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``llama_index_finetune_embed/vectors``."""
    own = os.environ.get("LLAMA_INDEX_FINETUNE_EMBED_CACHE")
    if own:
        return Path(own).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llama_index_finetune_embed" / "vectors"


__all__ = ["VectorCache", "model_key", "user_cache_dir"]
