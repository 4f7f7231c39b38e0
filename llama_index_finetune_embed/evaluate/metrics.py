"""Metric names, vectorized ranking, IR metrics and bootstrap intervals (numpy only).

Every number the evaluation stage reports is computed here or by LlamaIndex's metric classes
(``hit_rate, mrr, precision, recall, ap, ndcg``, scored in :mod:`.retriever`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: LlamaIndex metric names (``llama_index.core.evaluation.retrieval.metrics``), scored @top_k.
LLAMA_METRICS = ("hit_rate", "mrr", "precision", "recall", "ap", "ndcg")
#: sentence-transformers InformationRetrievalEvaluator defaults, so numbers line up with its CSVs.
ACCURACY_AT = (1, 3, 5, 10)
PRECISION_RECALL_AT = (1, 3, 5, 10)
MRR_AT = (10,)
NDCG_AT = (10,)
MAP_AT = (100,)
IR_DEPTH = max(*ACCURACY_AT, *PRECISION_RECALL_AT, *MRR_AT, *NDCG_AT, *MAP_AT)


def metric_names(max_depth: int | None = None) -> list[str]:
    """Every metric a result holds, in result order: LlamaIndex's, then the IR ones.

    ``max_depth``: the retriever path returns only ``top_k`` ids, so it scores only the IR metrics
    ``name@k`` with ``k <= top_k``; the fast path (``None``) ranks deep enough for all of them.
    """
    rel = np.zeros((1, IR_DEPTH), dtype=bool)
    ir = list(ir_per_query(rel, np.ones(1)))
    return [*LLAMA_METRICS, *(k for k in ir if max_depth is None or metric_depth(k) <= max_depth)]


def metric_depth(metric: str) -> int:
    """The ``k`` of an IR metric name: ``metric_depth("mrr@10") == 10``."""
    return int(metric.rsplit("@", 1)[1])


_BLOCK_ROWS = 512  # queries per similarity block: 512 x 10k float64 = 40 MB


def cosine_top_k(
    queries: np.ndarray,
    corpus: np.ndarray,
    depth: int,
    id_rank: np.ndarray,
    starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the ``depth`` best corpus rows per query, best first.

    Cosine is ``dot / (|q| * |c|)`` in float64, the formula of LlamaIndex's SimpleVectorStore.
    Equal scores are ordered by ascending corpus id (``id_rank``), like sentence-transformers'
    InformationRetrievalEvaluator; that total order makes results independent of block size.
    With ``starts``, ``corpus`` holds windows, those of corpus row ``i`` from ``starts[i]`` to
    the next start, and a row scores its best window's cosine.
    """
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(corpus, dtype=np.float64)
    depth = min(depth, c.shape[0] if starts is None else len(starts))
    q_norm, c_norm = np.linalg.norm(q, axis=1), np.linalg.norm(c, axis=1)
    idx = np.empty((q.shape[0], depth), dtype=np.int64)
    scores = np.empty((q.shape[0], depth), dtype=np.float64)
    for start in range(0, q.shape[0], _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, q.shape[0])
        sims = q[start:stop] @ c.T
        with np.errstate(divide="ignore", invalid="ignore"):
            sims /= np.outer(q_norm[start:stop], c_norm)
        sims[np.isnan(sims)] = -np.inf  # zero vectors rank last instead of poisoning the sort
        if starts is not None:
            sims = np.maximum.reduceat(sims, starts, axis=1)
        idx[start:stop], scores[start:stop] = _top_rows(sims, depth, id_rank)
    return idx, scores


def _top_rows(sims: np.ndarray, depth: int, id_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top ``depth`` per row under the (-score, id) order, exact even with ties at the cutoff."""
    if depth < sims.shape[1]:
        cand = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
    else:
        cand = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    cand_sims = np.take_along_axis(sims, cand, axis=1)
    order = np.lexsort((id_rank[cand], -cand_sims), axis=-1)
    top = np.take_along_axis(cand, order, axis=1)
    threshold = cand_sims.min(axis=1)
    tied = np.nonzero((sims >= threshold[:, None]).sum(axis=1) > depth)[0]
    for row in tied:  # argpartition picks arbitrary members of a tie at the cutoff
        members = np.nonzero(sims[row] >= threshold[row])[0]
        keep = np.lexsort((id_rank[members], -sims[row, members]))[:depth]
        top[row] = members[keep]
    return top, np.take_along_axis(sims, top, axis=1)


def relevance(ranking: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """Boolean matrix: is the corpus row at ``ranking[i, j]`` relevant to query ``i``."""
    if all(len(r) == 1 for r in relevant):
        return ranking == np.fromiter((r[0] for r in relevant), np.int64, len(relevant))[:, None]
    return np.stack([np.isin(row, rel) for row, rel in zip(ranking, relevant, strict=True)])


def ir_per_query(rel: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """sentence-transformers IR metrics per query from a relevance matrix (best first).

    Definitions follow ``InformationRetrievalEvaluator.compute_metrics``: accuracy@k (any hit),
    precision@k (hits / k), recall@k (hits / relevant), MRR@k, NDCG@k with binary gains and
    ideal DCG over ``min(relevant, k)``, and MAP@k normalised by ``min(k, relevant)``.
    """
    n_relevant = n_relevant.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ACCURACY_AT:
        out[f"accuracy@{k}"] = rel[:, :k].any(axis=1).astype(np.float64)
    for k in PRECISION_RECALL_AT:
        hits = rel[:, :k].sum(axis=1).astype(np.float64)
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / n_relevant
    for k in MRR_AT:
        out[f"mrr@{k}"] = _reciprocal_rank(rel[:, :k])
    for k in NDCG_AT:
        out[f"ndcg@{k}"] = _ndcg(rel[:, :k], n_relevant, k)
    for k in MAP_AT:
        out[f"map@{k}"] = _average_precision(rel[:, :k], n_relevant, k)
    return out


def _reciprocal_rank(rel: np.ndarray) -> np.ndarray:
    first = rel.argmax(axis=1)
    return np.where(rel.any(axis=1), 1.0 / (first + 1), 0.0)


def _ndcg(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (rel * discounts[: rel.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k).astype(np.int64) - 1]
    return dcg / ideal


def _average_precision(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    ranks = np.arange(1, rel.shape[1] + 1)
    precision_at_hit = np.cumsum(rel, axis=1) / ranks * rel
    return precision_at_hit.sum(axis=1) / np.minimum(k, n_relevant)


def first_relevant_rank(rel: np.ndarray) -> list[int | None]:
    """1-based rank of the first relevant hit per query, ``None`` when none was retrieved."""
    first = rel.argmax(axis=1) + 1
    return [int(r) if hit else None for r, hit in zip(first, rel.any(axis=1), strict=True)]


def bootstrap_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``values`` (queries x metrics) over ``n_resamples`` resamples of the queries.

    The resamples depend only on ``(n_queries, n_resamples, seed)``, so two models evaluated on
    the same queries share them: that is what makes the bootstrap on their difference paired.
    """
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, values.shape[1]), dtype=np.float64)
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        means[start : start + rows] = counts @ values / n
    return means


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval per column."""
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)


def two_sided_p(samples: np.ndarray) -> np.ndarray:
    """Bootstrap two-sided p-value of 'the mean difference is 0' per column (floor 1/n)."""
    below = (samples <= 0).mean(axis=0)
    above = (samples >= 0).mean(axis=0)
    return np.clip(2.0 * np.minimum(below, above), 1.0 / samples.shape[0], 1.0)


def mrr_at_k(
    queries: np.ndarray, docs: np.ndarray, relevant: Sequence[set[int]], k: int = 10
) -> float:
    """Mean reciprocal rank of the first relevant doc row within the top ``k`` (cosine).

    The adapter's validation score: a plain argsort (no tie rule), float32 in, no bootstrap.
    """
    q = queries / np.clip(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12, None)
    d = docs / np.clip(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12, None)
    top = np.argsort(-(q @ d.T), axis=1)[:, :k]
    rel = [[j in r for j in row] for row, r in zip(top, relevant, strict=True)]
    return float(_reciprocal_rank(np.array(rel, dtype=bool).reshape(top.shape)).mean())
