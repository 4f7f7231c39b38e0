"""Base-model vectors cached on disk, keyed by model identity and text hash (private).

Used by the adapter engine (and usable by any stage that embeds the same texts again): a rerun
with the same base model embeds nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from llama_index_finetune_embed._io import atomic_open, atomic_write_json, text_hash
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.embeddings import embed_queries, is_hf_embedding

logger = logging.getLogger(__name__)

# Fields that change what a base model returns; secrets (api_key) and batch sizes stay out.
_IDENTITY_FIELDS = (
    "model_name", "query_instruction", "text_instruction", "max_length", "normalize",
    "pooling", "dimensions", "mode", "long_texts",
)  # fmt: skip
_CACHE_CHUNK = 256  # texts embedded (and written to disk) per cache shard


def base_model_identity(model: BaseEmbedding) -> dict[str, Any]:
    """What identifies a base model's vectors: class name plus the fields that change them."""
    identity: dict[str, Any] = {"class": type(model).__name__}
    for name in _IDENTITY_FIELDS:
        value = getattr(model, name, None)
        if value is not None:
            identity[name] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return identity


def check_same_base(saved: dict[str, Any], given: dict[str, Any], path: Path) -> None:
    """Raise ValueError if a saved base-model identity is not the given model's."""

    def comparable(identity: dict[str, Any]) -> dict[str, Any]:
        # a model directory may move (another venv, another machine): compare its folder name
        out = {k: identity.get(k) for k in ("class", "query_instruction", "text_instruction")}
        out["model_name"] = os.path.basename(str(identity.get("model_name", "")).rstrip("/\\"))
        return out

    a, b = comparable(saved), comparable(given)
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    if diff:
        raise ValueError(
            f"the adapter in {path} was trained on base model {saved}, but base_embed_model is "
            f"{given} (differs in {diff}); pass the base model it was trained on, or "
            f"check_base_model=False to load it anyway"
        )


class EmbeddingCache:
    """Vectors of one base model on disk, keyed by text hash, queries and documents apart.

    Each batch of new vectors is written as one ``<side>-<hash>.npz`` shard with an atomic
    replace, so a crash loses at most the batch in flight and a rerun embeds nothing twice.

    Example:
        >>> cache = EmbeddingCache("cache", base_model)  # doctest: +SKIP
        >>> cache.embed(["Who founded Lyft?"], side="query").shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self, cache_dir: str | os.PathLike[str], model: BaseEmbedding, *, num_workers: int = 1
    ) -> None:
        identity = base_model_identity(model)
        key = text_hash(json.dumps(identity, sort_keys=True))[:16]
        self.path = Path(cache_dir) / f"{identity['class']}-{key}"
        self.model = model
        self.num_workers = num_workers
        self.computed = 0  # texts embedded by the base model through this object
        self._identity = identity
        self._known: dict[str, dict[str, np.ndarray]] = {}

    def embed(
        self, texts: Sequence[str], *, side: Literal["query", "text"], show_progress: bool = False
    ) -> np.ndarray:
        """Return a float32 array ``(len(texts), dim)``, embedding only texts not cached yet."""
        hashes = [text_hash(t) for t in texts]
        if side not in self._known:  # read the shards once per object and side
            self._known[side] = self._load(side)
        known = self._known[side]
        todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in known}
        items = list(todo.items())
        chunks = range(0, len(items), _CACHE_CHUNK)
        if show_progress and items:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"Embedding {side} texts")
        for start in chunks:
            batch = items[start : start + _CACHE_CHUNK]
            vectors = self._embed_batch([t for _, t in batch], side)
            _check_dims(vectors, self._identity, known)
            self._write_shard(side, [h for h, _ in batch], vectors)
            known.update(zip((h for h, _ in batch), vectors, strict=True))
        if not hashes:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[h] for h in hashes])

    def _embed_batch(self, texts: list[str], side: str) -> np.ndarray:
        self.computed += len(texts)
        if side == "text":
            raw = self.model.get_text_embedding_batch(texts)
        elif is_hf_embedding(self.model):
            raw = embed_queries(self.model, texts)
        elif self.num_workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.num_workers) as pool:
                raw = list(pool.map(self.model.get_query_embedding, texts))
        else:
            raw = [self.model.get_query_embedding(t) for t in texts]
        lengths = {len(v) for v in raw}
        if len(lengths) > 1:
            raise ValueError(
                f"base model {self._identity} returned {side} vectors of different lengths "
                f"{sorted(lengths)}; an adapter needs one fixed dimension"
            )
        return np.asarray(raw, dtype=np.float32).reshape(len(texts), -1)

    def _load(self, side: str) -> dict[str, np.ndarray]:
        known: dict[str, np.ndarray] = {}
        for shard in sorted(self.path.glob(f"{side}-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    known.update(zip(data["hashes"].tolist(), data["vectors"], strict=True))
            except Exception as exc:  # BadZipFile, EOFError, ...: recompute, never crash
                logger.warning("ignoring unreadable embedding cache shard %s (%s)", shard, exc)
        return known

    def _write_shard(self, side: str, hashes: list[str], vectors: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "identity.json").is_file():
            atomic_write_json(self.path / "identity.json", self._identity)
        name = f"{side}-{text_hash(''.join(hashes))[:16]}.npz"
        with atomic_open(self.path / name, "wb") as fh:
            np.savez(fh, hashes=np.array(hashes), vectors=vectors)


def _check_dims(vectors: np.ndarray, identity: dict[str, Any], known: dict[str, Any]) -> None:
    if known and vectors.size:
        dim = len(next(iter(known.values())))
        if vectors.shape[1] != dim:
            raise ValueError(
                f"base model {identity} returned {vectors.shape[1]}-dim vectors, but earlier "
                f"ones (cached or just embedded) have {dim}; an adapter needs one fixed dimension"
            )


class EmbeddedDataset:
    """A dataset as vectors: query rows, chunk rows, and each query's relevant chunk rows."""

    def __init__(self, cache: EmbeddingCache, ds: EmbeddingQAFinetuneDataset, progress: bool):
        qids, dids = list(ds.queries), list(ds.corpus)
        self.queries = cache.embed(
            [ds.queries[q] for q in qids], side="query", show_progress=progress
        )
        self.docs = cache.embed([ds.corpus[d] for d in dids], side="text", show_progress=progress)
        if self.queries.shape[1] != self.docs.shape[1]:
            raise ValueError(
                f"base model {base_model_identity(cache.model)} returned query vectors of "
                f"{self.queries.shape[1]} dims but text vectors of {self.docs.shape[1]}; "
                f"they must match"
            )
        row = {d: i for i, d in enumerate(dids)}
        self.relevant = [{row[d] for d in ds.relevant_docs[q]} for q in qids]

