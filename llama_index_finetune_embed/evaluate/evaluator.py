"""Dataset + embed model (or retriever) -> retrieval metrics with bootstrap intervals, per query.

Two paths give identical rankings and metric values:

* the **retriever path** builds ``TextNode`` s whose ids are the corpus ids, a ``VectorStoreIndex``
  with the embed model and ``as_retriever(similarity_top_k=top_k)``, then runs LlamaIndex's
  ``RetrieverEvaluator`` over every query (async, bounded concurrency); it also evaluates any
  retriever or index you pass in;
* the **fast path** (an embed model and no retriever) embeds corpus and queries once in batches,
  ranks by cosine with one matrix product per block of queries, and scores the same LlamaIndex
  metric classes, plus the sentence-transformers InformationRetrievalEvaluator metrics
  (accuracy@k, precision/recall@k, MRR@10, NDCG@10, MAP@100) from the same ranking.

A query whose retriever returns nothing scores 0 on every metric (core's metric classes raise:
llama_index issue #13926). Ties (equal cosine, e.g. duplicate chunks) are ordered by ascending
corpus id on the fast path, as in sentence-transformers; SimpleVectorStore's heap orders them
arbitrarily, so with exact ties the two paths may list tied ids in a different order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from llama_index_finetune_embed._models import is_hf_embedding
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate import metrics as _evalmath
from llama_index_finetune_embed.evaluate.results import (
    ComparisonTable,
    PairedDiff,
    QueryRow,
    RetrievalResult,
    WinLossRow,
    interval_dict,
)
from llama_index_finetune_embed.evaluate.retriever import (
    as_retriever,
    bounded,
    build_index,
    llama_metric_objects,
    llama_scores,
    run_retriever,
    show,
)

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from sentence_transformers import SentenceTransformer

__all__ = [
    "ComparisonTable",
    "DatasetEmbeddings",
    "PairedDiff",
    "QueryRow",
    "RetrievalResult",
    "WinLossRow",
    "build_index",
    "compare_embed_models",
    "embed_dataset",
    "evaluate_embeddings",
    "evaluate_retrieval",
    "ir_metrics",
]

logger = logging.getLogger(__name__)


Method = Literal["auto", "fast", "retriever"]


class DatasetEmbeddings:
    """Query and corpus embeddings of one model, in the dataset's query and corpus order.

    Compute once with :func:`embed_dataset` and pass to :func:`evaluate_embeddings` for every
    ``top_k`` you want; nothing is embedded twice.
    """

    def __init__(self, queries: np.ndarray, corpus: np.ndarray) -> None:
        self.queries = np.asarray(queries)
        self.corpus = np.asarray(corpus)


# -- public API -----------------------------------------------------------------------------


def evaluate_retrieval(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    embed_model: BaseEmbedding | str | os.PathLike[str] | None = None,
    *,
    top_k: int = 5,
    retriever: Any = None,
    method: Method = "auto",
    name: str | None = None,
    max_seq_length: int | None = None,
    workers: int = 8,
    show_progress: bool | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    primary_metric: str = "mrr",
) -> RetrievalResult:
    """Retrieval metrics of an embed model or a retriever on a dataset, with 95% intervals.

    Args:
        dataset: the evaluation dataset (or the path of its JSON file).
        embed_model: a LlamaIndex embed model, a model id/path or ``"local:all-MiniLM-L6-v2"``.
        top_k: how many chunks are retrieved per query; LlamaIndex metrics are scored @top_k.
        retriever: instead of ``embed_model``: a LlamaIndex retriever, or an index (its
            ``as_retriever(similarity_top_k=top_k)`` is used). Its node ids must be the corpus
            ids. Results are truncated to ``top_k``.
        method: ``"fast"`` (batched, embed model only), ``"retriever"`` (VectorStoreIndex +
            RetrieverEvaluator) or ``"auto"`` (fast unless a retriever is given).
        name: label of the result (default: the model or retriever class name).
        max_seq_length: for a model given by id/path, tokens it reads at once (longer chunks
            are read whole, in windows of this size: ``load_embed_model``).
        workers: concurrent queries on the retriever path (or query embeddings for API models).
        show_progress: progress bars; default: when this module logs at INFO.
        confidence: level of the bootstrap intervals.
        n_resamples: bootstrap resamples of the queries.
        seed: bootstrap seed (same seed + same queries = paired resamples across models).
        primary_metric: the metric a report leads with.

    Returns:
        A :class:`RetrievalResult`: mean ``metrics``, ``ci`` and one ``per_query`` row per query.

    Raises:
        ValueError: empty dataset, expected ids missing from the corpus, ``top_k < 1``, or a
            retriever whose node ids are not the corpus ids.

    Example:
        >>> from llama_index_finetune_embed import evaluate_retrieval
        >>> val = "../shared/data/seed10k/val_dataset.json"  # 790 questions, 395 chunks
        >>> result = evaluate_retrieval(
        ...     val, "local:all-MiniLM-L6-v2", top_k=5, max_seq_length=512
        ... )  # doctest: +SKIP
        >>> hit, (lo, hi) = result.metrics["hit_rate"], result.ci["hit_rate"]  # doctest: +SKIP
        >>> f"{hit:.3f} [{lo:.3f}, {hi:.3f}]"  # doctest: +SKIP
        '0.762 [0.732, 0.792]'
    """
    ds = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
    _check_options(top_k, confidence, n_resamples)
    if retriever is not None and embed_model is not None:
        raise ValueError("pass either embed_model or retriever=, not both")
    if retriever is None and embed_model is None:
        raise ValueError("pass an embed model (or model id/path) or retriever=")
    if method not in ("auto", "fast", "retriever"):
        raise ValueError(f"method must be 'auto', 'fast' or 'retriever', got {method!r}")
    if retriever is not None and method == "fast":
        raise ValueError(
            "method='fast' needs an embed model; a retriever is evaluated query by query"
        )
    stats = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    if retriever is None:
        model = resolve_embed_model(embed_model, max_seq_length=max_seq_length)
        label = name or _model_label(embed_model)
        if method != "retriever":
            embeddings = embed_dataset(ds, model, workers=workers, show_progress=show_progress)
            return evaluate_embeddings(
                ds, embeddings, top_k=top_k, name=label, primary_metric=primary_metric, **stats
            )
        retriever = build_index(ds, model, show_progress=show_progress)
    else:
        label = name or type(retriever).__name__
    retriever = as_retriever(retriever, top_k)
    rows = run_retriever(ds, retriever, top_k, workers=workers, show_progress=show_progress)
    return _finish(label, top_k, "retriever", ds, rows, primary_metric, **stats)


def evaluate_embeddings(
    dataset: EmbeddingQAFinetuneDataset,
    embeddings: DatasetEmbeddings,
    *,
    top_k: int = 5,
    name: str = "embeddings",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    primary_metric: str = "mrr",
) -> RetrievalResult:
    """Metrics from precomputed embeddings (the fast path without the embedding step).

    Example:
        >>> emb = embed_dataset(val, embed_model)  # doctest: +SKIP
        >>> at5, at10 = (evaluate_embeddings(val, emb, top_k=k) for k in (5, 10))  # doctest: +SKIP
    """
    ds = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
    _check_options(top_k, confidence, n_resamples)
    qids, cids = list(ds.queries), list(ds.corpus)
    _check_shapes(embeddings, len(qids), len(cids))
    id_rank = np.argsort(np.argsort(np.array(cids, dtype=object), kind="stable"), kind="stable")
    depth = max(top_k, _evalmath.IR_DEPTH)
    ranking, scores = _evalmath.cosine_top_k(embeddings.queries, embeddings.corpus, depth, id_rank)
    col = {cid: i for i, cid in enumerate(cids)}
    relevant = [[col[c] for c in dict.fromkeys(ds.relevant_docs[q])] for q in qids]
    rel = _evalmath.relevance(ranking, relevant)
    ir = _evalmath.ir_per_query(rel, np.array([len(r) for r in relevant]))
    first = _evalmath.first_relevant_rank(rel)
    metric_objs = llama_metric_objects()
    rows = []
    for i, qid in enumerate(qids):
        retrieved = [cids[j] for j in ranking[i, :top_k]]
        expected = list(ds.relevant_docs[qid])
        values = llama_scores(metric_objs, expected, retrieved)
        values.update({key: float(arr[i]) for key, arr in ir.items()})
        rows.append(
            QueryRow(
                query_id=qid,
                query=ds.queries[qid],
                expected_ids=expected,
                retrieved_ids=retrieved,
                scores=[float(s) for s in scores[i, :top_k]],
                first_relevant_rank=first[i],
                metrics=values,
            )
        )
    stats = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    return _finish(name, top_k, "fast", ds, rows, primary_metric, **stats)


def embed_dataset(
    dataset: EmbeddingQAFinetuneDataset,
    embed_model: BaseEmbedding | str | os.PathLike[str],
    *,
    workers: int = 8,
    show_progress: bool | None = None,
    max_seq_length: int | None = None,
) -> DatasetEmbeddings:
    """Embed a dataset's corpus (document side) and queries (query side, with its instruction).

    The corpus goes through ``get_text_embedding_batch`` exactly as ``VectorStoreIndex`` embeds
    nodes; queries go through the model's query path: one batched ``encode`` with the query
    prompt for ``HuggingFaceEmbedding``, bounded concurrent ``aget_query_embedding`` otherwise.

    Example:
        >>> emb = embed_dataset(val, "local:all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> emb.queries.shape, emb.corpus.shape  # doctest: +SKIP
        ((790, 384), (395, 384))
    """
    ds = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
    model = resolve_embed_model(embed_model, max_seq_length=max_seq_length)
    progress = show(show_progress)
    corpus = model.get_text_embedding_batch(list(ds.corpus.values()), show_progress=progress)
    queries = _embed_queries(model, list(ds.queries.values()), workers, progress)
    return DatasetEmbeddings(np.asarray(queries, np.float64), np.asarray(corpus, np.float64))


def compare_embed_models(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    models: Mapping[str, BaseEmbedding | str | os.PathLike[str]],
    *,
    top_k: int = 5,
    max_seq_length: int | None = None,
    workers: int = 8,
    show_progress: bool | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    primary_metric: str = "mrr",
) -> ComparisonTable:
    """One row per model, deltas and paired-bootstrap differences against the first model.

    Put first what the user has today: a model id or path is loaded as LlamaIndex loads it
    (``HuggingFaceEmbedding(model_name=...)``: its configured max length, long chunks
    truncated; saved prompts kept), or pass the embed model of the user's own index. Variants
    (windows, other lengths) are extra rows: e.g. ``load_embed_model(id, long_texts="window")``.
    ``max_seq_length`` overrides the length of every model given by id/path.

    Every model is evaluated on the fast path (embeddings computed once per model, reused by
    all metrics); the resamples are shared, so the differences are paired by query.

    Example:
        >>> models = {"base": "local:all-MiniLM-L6-v2", "finetuned": "runs/x/model"}
        >>> table = compare_embed_models(val, models, top_k=5)  # doctest: +SKIP
        >>> print(table.to_markdown()); table.plot("report.png")  # doctest: +SKIP
    """
    ds = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
    _check_options(top_k, confidence, n_resamples)
    if not models:
        raise ValueError("models is empty: pass e.g. {'base': 'local:all-MiniLM-L6-v2'}")
    results = []
    for label, spec in models.items():
        logger.info("evaluating %s", label)
        result = evaluate_retrieval(
            ds,
            spec,
            top_k=top_k,
            name=label,
            max_seq_length=max_seq_length,
            workers=workers,
            show_progress=show_progress,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
            primary_metric=primary_metric,
        )
        results.append(result)
    return ComparisonTable.from_results(results)


def ir_metrics(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    model_or_path: SentenceTransformer | str | os.PathLike[str],
    *,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    show_progress: bool | None = None,
) -> dict[str, float]:
    """InformationRetrievalEvaluator numbers for a sentence-transformers model (or its path).

    Embeds like the evaluator (``encode_query``/``encode_document`` with the model's prompts) and
    returns its metrics under its names without the ``cosine_`` prefix: ``accuracy@{1,3,5,10}``,
    ``precision@k``, ``recall@k``, ``mrr@10``, ``ndcg@10``, ``map@100``.

    Example:
        >>> ir_metrics(val, "local:all-MiniLM-L6-v2", max_seq_length=512)  # doctest: +SKIP
        {'accuracy@1': 0.4747, ..., 'mrr@10': 0.5972, 'ndcg@10': 0.6568, 'map@100': 0.6029}
    """
    from llama_index_finetune_embed._models import load_sentence_transformer

    ds = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
    if isinstance(model_or_path, (str, os.PathLike)):
        model = load_sentence_transformer(model_or_path)
    else:
        model = model_or_path
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    kwargs = dict(batch_size=batch_size, show_progress_bar=show(show_progress))
    emb = DatasetEmbeddings(
        model.encode_query(list(ds.queries.values()), **kwargs),
        model.encode_document(list(ds.corpus.values()), **kwargs),
    )
    result = evaluate_embeddings(ds, emb, top_k=_evalmath.IR_DEPTH, n_resamples=1)
    return {k: v for k, v in result.metrics.items() if "@" in k}


# -- inputs ---------------------------------------------------------------------------------


def resolve_embed_model(model: Any, *, max_seq_length: int | None = None) -> BaseEmbedding:
    """A LlamaIndex embed model from itself or a model id/path (saved prompts kept)."""
    if isinstance(model, (str, os.PathLike)):
        from llama_index_finetune_embed._models import load_embed_model

        kwargs = {"max_length": max_seq_length} if max_seq_length else {}
        return load_embed_model(model, **kwargs)
    if not hasattr(model, "get_text_embedding_batch"):
        raise TypeError(
            f"expected a LlamaIndex embed model or a model id/path, got {type(model).__name__}"
        )
    return model


def _check_options(top_k: Any, confidence: float = 0.95, n_resamples: int = 1) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")


def _check_shapes(emb: DatasetEmbeddings, n_queries: int, n_corpus: int) -> None:
    q, c = emb.queries, emb.corpus
    if q.ndim != 2 or c.ndim != 2 or q.shape[0] != n_queries or c.shape[0] != n_corpus:
        raise ValueError(
            f"embeddings must be ({n_queries}, dim) queries and ({n_corpus}, dim) corpus in "
            f"dataset order, got {q.shape} and {c.shape}"
        )
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != corpus dim {c.shape[1]}")


def _model_label(spec: Any) -> str:
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        return path.name if path.name not in ("model", "") else str(spec)
    return str(getattr(spec, "model_name", type(spec).__name__))


# -- embedding ------------------------------------------------------------------------------


def _embed_queries(model: Any, queries: list[str], workers: int, progress: bool) -> list[Any]:
    if is_hf_embedding(model):
        return model._embed(queries, prompt_name="query")  # batched encode, query prompt
    from llama_index.core.async_utils import asyncio_run

    return asyncio_run(bounded(queries, model.aget_query_embedding, workers, progress, "queries"))


def _finish(
    name: str,
    top_k: int,
    method: str,
    ds: Any,
    rows: Sequence[QueryRow],
    primary: str,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> RetrievalResult:
    keys = [k for k in rows[0].metrics if all(k in r.metrics for r in rows)]
    values = np.array([[r.metrics[k] for k in keys] for r in rows], dtype=np.float64)
    if primary not in keys:
        raise ValueError(f"primary_metric {primary!r} is not one of {keys}")
    boot = _evalmath.bootstrap_means(values, n_resamples, seed)
    lo, hi = _evalmath.percentile_interval(boot, confidence)
    return RetrievalResult(
        name=name,
        top_k=top_k,
        method=method,
        num_queries=len(rows),
        num_corpus=len(ds.corpus),
        metrics=dict(zip(keys, values.mean(axis=0).tolist(), strict=True)),
        ci=interval_dict(keys, lo, hi),
        per_query=list(rows),
        primary_metric=primary,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
