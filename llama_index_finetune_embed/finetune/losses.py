"""Chunk-grouped batches: every question of a chunk in one batch, the chunk encoded once (private).

Generated datasets hold several questions per chunk, and chunks are long (hundreds of tokens)
while questions are short. The classic recipe keeps a chunk's questions in separate batches, so
each chunk is encoded once per question. Grouping puts all questions of a chunk in one batch and
:class:`GroupedMultipleNegativesRankingLoss` encodes each distinct chunk once: the same in-batch
negatives per question at a fraction of the compute (about half with two questions per chunk).
The batches themselves come from ``_training.ChunkAwareBatchSampler`` given :func:`chunk_groups`
(and :func:`topic_clusters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def chunk_groups(
    rows: Sequence[tuple[str, str, list[str]]], keys: Sequence[frozenset[str]]
) -> tuple[list[list[int]], list[frozenset[str]]]:
    """Row indices grouped by positive chunk id, and each group's keys (the union of its rows')."""
    by_chunk: dict[str, list[int]] = {}
    for index, (_, doc_id, _) in enumerate(rows):
        by_chunk.setdefault(doc_id, []).append(index)
    groups = list(by_chunk.values())
    return groups, [frozenset().union(*(keys[i] for i in group)) for group in groups]


class GroupedMultipleNegativesRankingLoss(nn.Module):
    """MultipleNegativesRankingLoss that encodes each distinct positive of a batch once.

    Rows whose positives are the same text share one embedding and are never each other's
    negatives. With one row per positive it equals sentence-transformers'
    ``MultipleNegativesRankingLoss`` (``directions=("query_to_doc", "doc_to_query")`` when
    ``symmetric``, joint softmax).
    """

    def __init__(
        self,
        model: SentenceTransformer,
        scale: float = 20.0,
        symmetric: bool = True,
        slice_rows: int = 4,
    ) -> None:
        super().__init__()
        self.model, self.scale, self.symmetric = model, scale, symmetric
        self.slice_rows = slice_rows

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        if len(features) != 2:
            raise ValueError(f"expected (anchor, positive) columns, got {len(features)} columns")
        anchor, positive = features
        rows = positive["input_ids"].size(0)
        _, inverse = torch.unique(positive["input_ids"], dim=0, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), rows, device=inverse.device).scatter_reduce(
            0, inverse, torch.arange(rows, device=inverse.device), reduce="amin"
        )
        unique = {k: _take(v, first, rows) for k, v in positive.items()}
        queries = self.model(anchor)["sentence_embedding"]
        docs = self._embed_by_length(unique)
        query_to_doc = cos_sim(queries, docs) * self.scale  # (rows, distinct docs)
        index = torch.arange(rows, device=queries.device)
        positive_scores = query_to_doc[index, inverse]
        parts = [query_to_doc]
        if self.symmetric:  # row i: its doc against every query but the doc's other questions
            doc_to_query = cos_sim(docs[inverse], queries) * self.scale
            siblings = (inverse[:, None] == inverse[None, :]) & ~torch.eye(
                rows, dtype=torch.bool, device=queries.device
            )
            parts.append(doc_to_query.masked_fill(siblings, -torch.inf))
        log_z = torch.logsumexp(torch.cat(parts, dim=1), dim=1)
        return -(positive_scores - log_z).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "symmetric": self.symmetric}

    def _embed_by_length(self, features: dict[str, Any]) -> Tensor:
        """Embed long texts in length-sorted slices, each padded only to its own longest text.

        On a CPU compute follows the padded length, and chunks vary (a batch padded to its
        longest chunk wastes about a sixth of the tokens on 10-K chunks); on a GPU one pass is
        faster. Mean pooling ignores padding, so the embeddings are the same either way.
        """
        mask = features.get("attention_mask")
        rows = mask.size(0) if mask is not None else 0
        if mask is None or mask.device.type != "cpu" or rows <= self.slice_rows:
            return self.model(features)["sentence_embedding"]
        order = torch.argsort(mask.sum(1), descending=True)
        parts = []
        for part in order.split(self.slice_rows):
            columns = mask[part].bool().any(0)  # works for left and right padding
            sliced = {k: _take(v, part, rows) for k, v in features.items()}
            sliced = {
                k: v[:, columns] if isinstance(v, Tensor) and v.dim() == 2
                and v.size(1) == mask.size(1) else v
                for k, v in sliced.items()
            }
            parts.append(self.model(sliced)["sentence_embedding"])
        return torch.cat(parts)[torch.argsort(order)]


def _take(value: Any, index: Tensor, rows: int) -> Any:
    """``value[index]`` for per-row tensors; anything else unchanged."""
    if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == rows:
        return value[index]
    return value


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
