"""Hard negatives: chunks close to a question but not its answer, mined with the base model.

Imported lazily by the engine (numpy here, the model's encoder when mining).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from llama_index_finetune_embed.finetune.sampler import Row, row_keys

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

logger = logging.getLogger(__name__)


def with_hard_negatives(
    model: SentenceTransformer,
    dataset: EmbeddingQAFinetuneDataset,
    rows: Sequence[Row],
    chunk_keys: dict[str, set[str]],
    *,
    num_negatives: int,
    relative_margin: float,
    prompts: tuple[str, str],
    batch_size: int,
) -> tuple[list[Row], list[frozenset[str]]]:
    """(rows with ``num_negatives`` mined negatives each, their keys); rows without enough drop.

    Raises:
        ValueError: no row has ``num_negatives`` usable negatives.
    """
    pairs = [(qid, doc_id) for qid, doc_id, _ in rows]
    negatives = mine_hard_negatives(
        model, dataset, pairs, chunk_keys, num_negatives=num_negatives,
        relative_margin=relative_margin, prompts=prompts, batch_size=batch_size,
    )  # fmt: skip
    kept = [(q, d, n) for (q, d), n in zip(pairs, negatives, strict=True) if n is not None]
    if not kept:
        raise ValueError(
            f"hard_negatives={num_negatives}: no training pair has that many chunks "
            "scoring below its positive (minus hard_negative_margin); lower hard_negatives "
            "or hard_negative_margin, or use hard_negatives=0"
        )
    if len(kept) < len(pairs):
        logger.warning("hard negatives: dropped %d of %d pairs without enough usable "
                       "negatives", len(pairs) - len(kept), len(pairs))
    return kept, row_keys(dataset, kept, chunk_keys)


def mine_hard_negatives(
    model: SentenceTransformer,
    dataset: EmbeddingQAFinetuneDataset,
    pairs: Sequence[tuple[str, str]],
    chunk_keys: dict[str, set[str]],
    *,
    num_negatives: int,
    relative_margin: float,
    prompts: tuple[str, str],
    batch_size: int,
) -> list[list[str] | None]:
    """Negative chunk ids per (query id, positive id) pair, mined with the model before training.

    As sentence-transformers' ``mine_hard_negatives(relative_margin=...)``: the closest chunks
    scoring at most ``(1 - relative_margin)`` x the positive, so near-duplicates of the positive
    (likely false negatives) are skipped. Unlike it, every relevant chunk of the query and every
    chunk overlapping the positive are excluded too (the library only knows the one positive
    text). A pair with fewer than ``num_negatives`` usable chunks gets ``None``.
    """
    corpus_ids = list(dataset.corpus)
    qids = list(dict.fromkeys(qid for qid, _ in pairs))
    encode = {"batch_size": batch_size, "normalize_embeddings": True, "convert_to_numpy": True}
    docs = model.encode([dataset.corpus[c] for c in corpus_ids], prompt=prompts[1], **encode)
    queries = model.encode([dataset.queries[q] for q in qids], prompt=prompts[0], **encode)
    scores = queries @ docs.T  # (queries, chunks)
    position = {cid: i for i, cid in enumerate(corpus_ids)}
    qrow = {qid: i for i, qid in enumerate(qids)}
    result: list[list[str] | None] = []
    for qid, doc_id in pairs:
        row = scores[qrow[qid]]
        positive = float(row[position[doc_id]])
        ceiling = positive - relative_margin * abs(positive)
        banned = set().union(*(chunk_keys[c] for c in [*dataset.relevant_docs[qid], doc_id]))
        picked: list[str] = []
        for i in np.argsort(-row):
            if row[i] <= ceiling and chunk_keys[corpus_ids[i]].isdisjoint(banned):
                picked.append(corpus_ids[i])
                if len(picked) == num_negatives:
                    break
        result.append(picked if len(picked) == num_negatives else None)
    return result


__all__ = ["mine_hard_negatives", "with_hard_negatives"]
