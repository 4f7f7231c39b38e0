"""Which rows may share a batch, and the batch sampler that keeps them apart.

In-batch negatives are only right when they are not answers too: two questions about one chunk,
identical texts under two ids, and chunks that overlap (the words a text splitter repeats between
neighbours) must never be each other's negatives. :func:`chunk_conflict_keys` and
:func:`row_keys` give every row keys; :class:`ChunkAwareBatchSampler` never puts two rows that
share a key in one batch. With chunk groups (:func:`chunk_groups`) every question of a chunk
travels with it, and with topic clusters (:func:`topic_clusters`) each batch is drawn from one
cluster of similar questions.

Imported lazily by the engine (torch and sentence-transformers load here).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from llama_index_finetune_embed._io import text_hash

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

logger = logging.getLogger(__name__)

_MAX_RESAMPLE_PASSES = 2

# a training row: (query id, positive chunk id, negative chunk ids)
Row = tuple[str, str, list[str]]


def training_rows(dataset: EmbeddingQAFinetuneDataset) -> list[Row]:
    """One row per (query, relevant chunk) pair of ``dataset``, without negatives."""
    return [(qid, doc_id, []) for qid, _, doc_id in dataset.pairs()]


# -- which rows may share a batch -----------------------------------------------------------


def chunk_conflict_keys(
    corpus: dict[str, str], overlap_words: int | None
) -> dict[str, set[str]]:
    """chunk id -> keys; two chunks sharing a key must never be each other's in-batch negative.

    Every chunk has its id and a hash of its text (identical texts under two ids). With
    ``overlap_words``, a chunk whose opening ``overlap_words`` words occur inside another chunk
    (the overlap a text splitter leaves between neighbours) shares a key with that chunk.
    """
    keys = {cid: {f"c:{cid}", f"t:{text_hash(text)}"} for cid, text in corpus.items()}
    if not overlap_words:
        return keys
    words = {cid: re.findall(r"\w+", text.lower()) for cid, text in corpus.items()}
    heads: dict[tuple[str, ...], list[str]] = {}
    for cid, toks in words.items():
        if len(toks) > overlap_words:  # a chunk shorter than the window is left alone
            heads.setdefault(tuple(toks[:overlap_words]), []).append(cid)
    for cid, toks in words.items():
        for start in range(1, len(toks) - overlap_words + 1):
            owners = heads.get(tuple(toks[start : start + overlap_words]))
            for owner in owners or ():
                if owner != cid:
                    keys[cid].add(f"o:{owner}")
                    keys[owner].add(f"o:{owner}")
    return keys


def row_keys(
    dataset: EmbeddingQAFinetuneDataset,
    rows: Sequence[Row],
    chunk_keys: dict[str, set[str]],
) -> list[frozenset[str]]:
    """Keys of each training row (query id, positive id, negative ids): query text + chunk keys."""
    result = []
    for qid, doc_id, negatives in rows:
        keys = {f"q:{text_hash(dataset.queries[qid])}"}
        for cid in [*dataset.relevant_docs[qid], doc_id, *negatives]:
            keys |= chunk_keys[cid]
        result.append(frozenset(keys))
    return result


def chunk_groups(
    rows: Sequence[Row], keys: Sequence[frozenset[str]]
) -> tuple[list[list[int]], list[frozenset[str]]]:
    """Row indices grouped by positive chunk id, and each group's keys (the union of its rows')."""
    by_chunk: dict[str, list[int]] = {}
    for index, (_, doc_id, _) in enumerate(rows):
        by_chunk.setdefault(doc_id, []).append(index)
    groups = list(by_chunk.values())
    return groups, [frozenset().union(*(keys[i] for i in group)) for group in groups]


def max_compatible_rows(keys: Sequence[frozenset[str]]) -> int:
    """How many rows a greedy pass can put in one batch (an upper bound check for batch size)."""
    taken: set[str] = set()
    count = 0
    for row in keys:
        if taken.isdisjoint(row):
            taken |= row
            count += 1
    return count


def fit_batch_size(batch_size: int, fits: int, *, hard_negatives: int = 0) -> int:
    """The batch size to train with: ``batch_size``, or ``fits`` (what the data allows) if less.

    Shrinking says so in one warning; fewer than 2 chunks that can share a batch is an error
    (the loss's negatives are the other chunks of the batch), and ``batch_size=1`` without hard
    negatives trains with no negatives at all, which is worth a warning.
    """
    if fits < 2:
        raise ValueError(
            f"train_dataset has {fits} chunk(s) that can share a batch; training needs at least "
            "2 (each chunk is the other chunks' negative; chunks that are one text or overlap "
            "cannot share a batch): give it more or longer documents"
        )
    if batch_size > fits:
        logger.warning(
            "batch_size %d -> %d: only %d chunks of train_dataset can share a batch (chunks that "
            "share a text or overlap are kept apart)", batch_size, fits, fits,
        )  # fmt: skip
        return fits
    if batch_size == 1 and not hard_negatives:
        logger.warning(
            "batch_size=1: no chunk has an in-batch negative, so the default loss learns next "
            "to nothing; use batch_size >= 2 (or hard_negatives >= 1)"
        )
    return batch_size


# -- batches --------------------------------------------------------------------------------


class ChunkAwareBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which no two items share a key (same chunk, overlap, or query).

    A stricter ``NoDuplicatesBatchSampler``: identical texts are caught as there, and so are two
    questions about one chunk and chunks that overlap, which have different texts. An item is a
    row, or with ``groups`` a group of rows (all questions of one chunk) that travel together;
    ``keys`` and ``clusters`` are per item. With ``clusters``, batches are filled one cluster at
    a time (clusters in a random order).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        keys: Sequence[frozenset[str]],
        clusters: Sequence[int] | None = None,
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.groups = [list(g) for g in groups] if groups is not None else None
        if self.groups is not None and sum(map(len, self.groups)) != len(dataset):
            raise ValueError(f"groups cover {sum(map(len, self.groups))} of {len(dataset)} rows")
        items = len(self.groups) if self.groups is not None else len(dataset)
        if len(keys) != items:
            raise ValueError(f"got {len(keys)} keys for {items} items")
        if clusters is not None and len(clusters) != len(keys):
            raise ValueError(f"got {len(clusters)} cluster ids for {len(keys)} items")
        self.keys = list(keys)
        self.clusters = list(clusters) if clusters is not None else None
        self.items_per_batch = batch_size
        if self.groups is not None:
            # batches vary in rows; accelerate's DDP sharding drops every batch whose length
            # differs from ``batch_size`` unless it is None ("indices with dynamic length")
            self.batch_size = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        expected, yielded = len(self), 0
        for _ in range(1 + _MAX_RESAMPLE_PASSES):
            for batch in self._one_pass(generator):
                if self.groups is not None:
                    batch = [row for item in batch for row in self.groups[item]]
                yield batch
                yielded += 1
                if yielded >= expected:
                    return
            if yielded == 0:
                return

    def _one_pass(self, generator: torch.Generator) -> Iterator[list[int]]:
        remaining = torch.randperm(len(self.keys), generator=generator).tolist()
        if self.clusters is not None:  # clusters in a random order, each one's rows together
            rank = torch.randperm(max(self.clusters) + 1, generator=generator).tolist()
            remaining.sort(key=lambda i: rank[self.clusters[i]])
        while remaining:
            batch: list[int] = []
            taken: set[str] = set()
            deferred: list[int] = []
            for index in remaining:
                if len(batch) < self.items_per_batch and taken.isdisjoint(self.keys[index]):
                    batch.append(index)
                    taken |= self.keys[index]
                else:
                    deferred.append(index)
            remaining = deferred
            if len(batch) == self.items_per_batch or not self.drop_last:
                yield batch
            else:
                return

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.keys) // self.items_per_batch
        return (len(self.keys) + self.items_per_batch - 1) // self.items_per_batch


def topic_clusters(
    model: SentenceTransformer,
    texts: Sequence[str],
    items: Sequence[Sequence[int]],
    batch_size: int,
    *,
    prompt: str = "",
    seed: int = 0,
    iterations: int = 20,
) -> list[int]:
    """A cluster id per item (a list of text indices), about ``batch_size`` items per cluster.

    Topic-aware batches (as TAS-Balanced, Hofstaetter et al. 2021): items are embedded with the
    model before training (the mean of their texts, here the questions, which are short and
    cheap to encode) and grouped by spherical k-means, so a batch drawn from one cluster holds
    negatives that are about the same thing as the positive, not random ones.
    """
    k = max(1, round(len(items) / batch_size))
    if k == 1:
        return [0] * len(items)
    emb = model.encode(list(texts), prompt=prompt or None, batch_size=64,
                       convert_to_tensor=True, normalize_embeddings=True).float().cpu()
    points = torch.nn.functional.normalize(
        torch.stack([emb[list(item)].mean(0) for item in items]), dim=1
    )
    generator = torch.Generator().manual_seed(seed)
    centers = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    assign = torch.zeros(len(points), dtype=torch.long)
    for _ in range(iterations):
        assign = (points @ centers.T).argmax(1)
        for c in range(k):
            members = points[assign == c]
            if len(members):
                centers[c] = torch.nn.functional.normalize(members.mean(0), dim=0)
            else:  # an empty cluster restarts at a random point
                centers[c] = points[torch.randint(len(points), (1,), generator=generator)][0]
    return assign.tolist()


def build_sampler(
    rows: Sequence[Row],
    keys: Sequence[frozenset[str]],
    *,
    grouped: bool,
    topic_batches: bool,
    model: SentenceTransformer,
    queries: Mapping[str, str],
    batch_size: int,
    prompt: str,
    seed: int,
) -> partial[ChunkAwareBatchSampler]:
    """The batch sampler factory: rows (or chunk groups), their keys, and topic clusters."""
    groups = None
    if grouped:
        groups, keys = chunk_groups(rows, keys)
    clusters = None
    if topic_batches:
        texts = [queries[qid] for qid, _, _ in rows]
        items = groups if groups is not None else [[i] for i in range(len(rows))]
        clusters = topic_clusters(model, texts, items, batch_size, prompt=prompt, seed=seed)
    return partial(ChunkAwareBatchSampler, keys=keys, clusters=clusters, groups=groups)


__all__ = [
    "ChunkAwareBatchSampler",
    "build_sampler",
    "chunk_conflict_keys",
    "chunk_groups",
    "fit_batch_size",
    "max_compatible_rows",
    "row_keys",
    "topic_clusters",
    "training_rows",
]
