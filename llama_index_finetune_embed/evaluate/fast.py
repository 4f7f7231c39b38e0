"""The fast path: embed corpus and queries once, rank by cosine in blocks, score every metric.

It ranks exactly as the retriever path does (``VectorStoreIndex`` + ``RetrieverEvaluator``) and
scores the same LlamaIndex metric classes, plus sentence-transformers' IR metrics from the same
ranking; ties (equal cosine) are ordered by ascending corpus id, as in sentence-transformers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llama_index_finetune_embed.embeddings import embed_queries, is_hf_embedding
from llama_index_finetune_embed.evaluate import metrics
from llama_index_finetune_embed.evaluate.results import QueryRow
from llama_index_finetune_embed.evaluate.retriever import (
    bounded,
    llama_metric_objects,
    llama_scores,
)

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset


class DatasetEmbeddings:
    """Query and corpus embeddings of one model, in the dataset's query and corpus order.

    Compute once with :func:`embed_dataset` (or ``RetrievalEvaluator.embed``) and score them
    for every ``top_k`` you want; nothing is embedded twice. With ``starts``, ``corpus`` holds
    windows in corpus order (those of chunk ``i`` from row ``starts[i]``; a chunk scores its
    best window, as ``build_window_index`` ranks it).
    """

    def __init__(
        self, queries: np.ndarray, corpus: np.ndarray, starts: np.ndarray | None = None
    ) -> None:
        self.queries = np.asarray(queries)
        self.corpus = np.asarray(corpus)
        self.starts = None if starts is None else np.asarray(starts, dtype=np.int64)

    @property
    def num_chunks(self) -> int:
        """Corpus entries these embeddings rank (windows are grouped back into their chunk)."""
        return self.corpus.shape[0] if self.starts is None else len(self.starts)


def resolve_embed_model(model: Any, *, max_seq_length: int | None = None) -> BaseEmbedding:
    """A LlamaIndex embed model from itself or a model id/path (saved prompts kept)."""
    if isinstance(model, (str, os.PathLike)):
        from llama_index_finetune_embed.embeddings import load_embed_model

        kwargs = {"max_length": max_seq_length} if max_seq_length else {}
        return load_embed_model(model, **kwargs)
    if not hasattr(model, "get_text_embedding_batch"):
        raise TypeError(
            f"expected a LlamaIndex embed model or a model id/path, got {type(model).__name__}"
        )
    return model


def model_label(spec: Any) -> str:
    """A result's default name: the folder of a path (its parent for ``.../model``), else the
    model's ``model_name`` or class name."""
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        return path.name if path.name not in ("model", "") else str(spec)
    return str(getattr(spec, "model_name", type(spec).__name__))


def embed(
    ds: EmbeddingQAFinetuneDataset,
    model: BaseEmbedding,
    *,
    num_workers: int,
    progress: bool,
    windows: Any = False,
    embed_with: Callable[[list[str]], Any] | None = None,
    embed_queries: Callable[[list[str]], Any] | None = None,
) -> DatasetEmbeddings:
    """Corpus through ``get_text_embedding_batch`` (as ``VectorStoreIndex`` embeds nodes; sent
    longest first, returned in corpus order) or ``embed_with`` (texts -> document vectors, e.g.
    a ``RayEmbedder``), queries through the model's query path (with its query instruction).
    ``windows``: each chunk cut into the windows ``build_window_index`` stores for it (``True``)
    or a given ``WindowSplitter`` cuts, every window embedded. ``embed_queries``: queries ->
    vectors instead of the model's query path (a cache in front of it)."""
    texts, starts = list(ds.corpus.values()), None
    if windows is not False:
        texts, starts = corpus_windows(ds, model, None if windows is True else windows)
    # longest first: each embed batch holds texts of about one length (less padding, same vectors)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    longest_first = [texts[i] for i in order]
    if embed_with is not None:
        vectors = embed_with(longest_first)
    else:
        vectors = model.get_text_embedding_batch(longest_first, show_progress=progress)
    corpus = np.empty_like(np.asarray(vectors, np.float64))
    corpus[order] = vectors
    if embed_queries is not None:
        queries = embed_queries(list(ds.queries.values()))
    else:
        queries = embed_query_texts(model, list(ds.queries.values()), num_workers, progress)
    return DatasetEmbeddings(np.asarray(queries, np.float64), corpus, starts)


def corpus_windows(
    ds: EmbeddingQAFinetuneDataset, model: Any, splitter: Any = None
) -> tuple[list[str], np.ndarray]:
    """(window texts as embedded, first window of each chunk): what ``build_window_index``
    stores for ``TextNode(id_=corpus_id, text=text)`` chunks (``splitter``: default the
    model's own)."""
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.serving import window_splitter

    splitter = splitter or window_splitter(model)
    texts, starts = [], []
    for cid, text in ds.corpus.items():
        starts.append(len(texts))
        texts += splitter.window_texts(TextNode(id_=cid, text=text))
    return texts, np.asarray(starts, dtype=np.int64)



def embed_query_texts(
    model: Any, queries: list[str], num_workers: int, progress: bool
) -> list[Any]:
    """Queries through the model's query path: batched for ``HuggingFaceEmbedding``, else
    ``num_workers`` concurrent ``aget_query_embedding`` calls."""
    if is_hf_embedding(model):
        return embed_queries(model, queries)
    from llama_index.core.async_utils import asyncio_run

    fn = model.aget_query_embedding
    return asyncio_run(bounded(queries, fn, num_workers, progress, "queries"))


def check_shapes(emb: DatasetEmbeddings, n_queries: int, n_corpus: int) -> None:
    """Raise ValueError unless ``emb`` is ``(n_queries, dim)`` and ``(n_corpus, dim)``."""
    q, c = emb.queries, emb.corpus
    if q.ndim != 2 or c.ndim != 2 or q.shape[0] != n_queries or emb.num_chunks != n_corpus:
        raise ValueError(
            f"embeddings must be ({n_queries}, dim) queries and ({n_corpus}, dim) corpus in "
            f"dataset order, got {q.shape} and {c.shape}"
        )
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != corpus dim {c.shape[1]}")


def rank_rows(
    ds: EmbeddingQAFinetuneDataset, embeddings: DatasetEmbeddings, top_k: int
) -> list[QueryRow]:
    """One row per query (dataset order): top_k ids and scores, every metric's value."""
    qids, cids = list(ds.queries), list(ds.corpus)
    check_shapes(embeddings, len(qids), len(cids))
    id_rank = np.argsort(np.argsort(np.array(cids, dtype=object), kind="stable"), kind="stable")
    depth = max(top_k, metrics.IR_DEPTH)
    ranking, scores = metrics.cosine_top_k(
        embeddings.queries, embeddings.corpus, depth, id_rank, embeddings.starts
    )
    col = {cid: i for i, cid in enumerate(cids)}
    relevant = [[col[c] for c in dict.fromkeys(ds.relevant_docs[q])] for q in qids]
    rel = metrics.relevance(ranking, relevant)
    ir = metrics.ir_per_query(rel, np.array([len(r) for r in relevant]))
    first = metrics.first_relevant_rank(rel)
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
    return rows
