"""The training loss: the recipe's (Cached/Grouped) MultipleNegativesRankingLoss, or the user's.

Generated datasets hold several questions per chunk, and chunks are long (hundreds of tokens)
while questions are short. The classic recipe keeps a chunk's questions in separate batches, so
each chunk is encoded once per question. Grouping puts all questions of a chunk in one batch and
:class:`GroupedMultipleNegativesRankingLoss` encodes each distinct chunk once: the same in-batch
negatives per question at a fraction of the compute (about half with two questions per chunk).
The batches themselves come from :class:`~.sampler.ChunkAwareBatchSampler` given
:func:`~.sampler.chunk_groups` (and :func:`~.sampler.topic_clusters`).

Imported lazily by the engine (torch and sentence-transformers load here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.finetune.recipe import FinetuneRecipe


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


def build_loss(
    model: SentenceTransformer,
    loss: nn.Module | Callable[[SentenceTransformer], nn.Module] | None,
    recipe: FinetuneRecipe,
    *,
    grouped: bool,
) -> nn.Module:
    """The given loss, or the recipe's (Cached/Grouped) MNRL, wrapped in MatryoshkaLoss if asked."""
    from sentence_transformers.sentence_transformer import losses

    if loss is not None:
        built = loss if isinstance(loss, nn.Module) else loss(model)
    elif grouped:
        built = GroupedMultipleNegativesRankingLoss(model, symmetric=recipe.symmetric)
    else:
        directions = ("query_to_doc", "doc_to_query") if recipe.symmetric else ("query_to_doc",)
        if recipe.cached_loss:
            built = losses.CachedMultipleNegativesRankingLoss(
                model, mini_batch_size=recipe.mini_batch_size, directions=directions
            )
        else:
            built = losses.MultipleNegativesRankingLoss(model, directions=directions)
    dims = recipe.matryoshka_dims
    if dims:
        built = losses.MatryoshkaLoss(model, built, matryoshka_dims=sorted(dims, reverse=True))
    return built


def check_matryoshka_dims(model: SentenceTransformer, dims: Sequence[int] | None) -> None:
    """Raise ``ValueError`` unless every Matryoshka size fits the model's embedding width."""
    if not dims:
        return
    width = model.get_embedding_dimension() or max(dims)
    if any(d < 1 or d > width for d in dims):
        raise ValueError(f"matryoshka_dims must be in 1..{width}, got {list(dims)}")


__all__ = ["GroupedMultipleNegativesRankingLoss", "build_loss", "check_matryoshka_dims"]
