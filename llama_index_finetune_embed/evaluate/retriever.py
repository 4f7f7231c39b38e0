"""The retriever path: VectorStoreIndex + RetrieverEvaluator, query by query.

Also the LlamaIndex metric helpers both paths share, so both score with the same classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from llama_index_finetune_embed._io import progress_enabled
from llama_index_finetune_embed.evaluate import metrics
from llama_index_finetune_embed.evaluate.results import QueryRow

if TYPE_CHECKING:
    from llama_index.core.base.base_retriever import BaseRetriever

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

logger = logging.getLogger(__name__)

_PROBE_QUERIES = 8


async def bounded(
    items: list[Any], fn: Any, num_workers: int, progress: bool, desc: str
) -> list[Any]:
    """``[await fn(x) for x in items]`` with at most ``num_workers`` in flight, results in order."""
    from tqdm.auto import tqdm

    semaphore = asyncio.Semaphore(max(1, num_workers))
    bar = tqdm(total=len(items), desc=desc, disable=not progress)

    async def one(item: Any) -> Any:
        async with semaphore:
            out = await fn(item)
        bar.update(1)
        return out

    try:
        return await asyncio.gather(*(one(x) for x in items))
    finally:
        bar.close()


def build_index(
    dataset: EmbeddingQAFinetuneDataset,
    embed_model: Any,
    *,
    show_progress: bool | None = None,
    windows: bool = False,
) -> Any:
    """A ``VectorStoreIndex`` over ``TextNode`` s whose ids are the corpus ids (``windows``:
    ``build_window_index`` over them)."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    nodes = [TextNode(id_=cid, text=text) for cid, text in dataset.corpus.items()]
    progress = progress_enabled(show_progress, logger)
    if windows:
        from llama_index_finetune_embed.serving import build_window_index

        return build_window_index(nodes, embed_model, show_progress=progress)
    return VectorStoreIndex(nodes, embed_model=embed_model, show_progress=progress)


def as_retriever(retriever: Any, top_k: int) -> BaseRetriever:
    if hasattr(retriever, "aretrieve"):
        return retriever
    if hasattr(retriever, "as_retriever"):
        return retriever.as_retriever(similarity_top_k=top_k)
    raise TypeError(
        f"retriever must be a LlamaIndex retriever or index, got {type(retriever).__name__}"
    )


def run_retriever(
    ds: EmbeddingQAFinetuneDataset,
    retriever: Any,
    top_k: int,
    *,
    num_workers: int,
    show_progress: bool | None,
) -> list[QueryRow]:
    """One row per query, in dataset order; fails early if the node ids are not corpus ids."""
    from llama_index.core.async_utils import asyncio_run

    evaluator = _safe_evaluator(retriever)
    qids = list(ds.queries)

    async def one(qid: str) -> Any:
        return await evaluator.aevaluate(ds.queries[qid], list(ds.relevant_docs[qid]), top_k=top_k)

    # a few queries first: a wrong-id index fails in seconds, not after a paid run
    probe = min(len(qids), _PROBE_QUERIES)
    outs = asyncio_run(bounded(qids[:probe], one, num_workers, False, "probing"))
    _check_node_ids([o.retrieved_ids for o in outs], ds.corpus)
    progress = progress_enabled(show_progress, logger)
    outs += asyncio_run(bounded(qids[probe:], one, num_workers, progress, "retrieving"))
    _check_node_ids([o.retrieved_ids for o in outs], ds.corpus)
    return [_row_from_eval(qid, out, top_k) for qid, out in zip(qids, outs, strict=True)]


def _safe_evaluator(retriever: Any) -> Any:
    """RetrieverEvaluator whose empty retrievals score 0 (core raises: llama_index #13926)."""
    from llama_index.core.evaluation import RetrieverEvaluator
    from llama_index.core.evaluation.retrieval.base import RetrievalEvalResult

    class _ZeroOnEmptyRetrieverEvaluator(RetrieverEvaluator):
        async def aevaluate(
            self,
            query: str,
            expected_ids: list[str],
            expected_texts: Any = None,
            mode: Any = "text",
            top_k: int | None = None,
            **kwargs: Any,
        ) -> Any:
            ids, texts = await self._aget_retrieved_ids_and_texts(query)
            ids, texts = ids[:top_k], texts[:top_k]
            scores = {m.metric_name: _score(m, expected_ids, ids) for m in self.metrics}
            return RetrievalEvalResult(
                query=query,
                expected_ids=expected_ids,
                retrieved_ids=ids,
                retrieved_texts=texts,
                metric_dict=scores,
            )

    return _ZeroOnEmptyRetrieverEvaluator(metrics=llama_metric_objects(), retriever=retriever)


def _check_node_ids(retrieved: list[list[str]], corpus: Mapping[str, str]) -> None:
    ids = [i for row in retrieved for i in row]
    outside = [i for i in ids if i not in corpus]
    if ids and len(outside) == len(ids):
        raise ValueError(
            f"the retriever returns node ids that are not the dataset's corpus ids (e.g. "
            f"{outside[0]!r}, expected ids like {next(iter(corpus))!r}), so every hit rate "
            "would be 0. Build the index from TextNode(id_=corpus_id, text=text) for the "
            "dataset's corpus, or pass the embed model instead of a retriever."
        )
    if outside:
        logger.warning(
            "%d of %d retrieved node ids are not corpus ids (e.g. %r); they count as misses",
            len(outside),
            len(ids),
            outside[0],
        )


def _row_from_eval(qid: str, out: Any, top_k: int) -> QueryRow:
    values = {name: float(r.score) for name, r in out.metric_dict.items()}
    rel = np.array([[i in set(out.expected_ids) for i in out.retrieved_ids]], dtype=bool)
    if rel.shape[1] == 0:
        rel = np.zeros((1, 1), dtype=bool)
    ir = metrics.ir_per_query(rel, np.array([len(set(out.expected_ids))]))
    values.update({k: float(v[0]) for k, v in ir.items() if metrics.metric_depth(k) <= top_k})
    return QueryRow(
        query_id=qid,
        query=out.query,
        expected_ids=list(out.expected_ids),
        retrieved_ids=list(out.retrieved_ids),
        scores=[],
        first_relevant_rank=metrics.first_relevant_rank(rel)[0],
        metrics=values,
    )


# -- metrics --------------------------------------------------------------------------------


def llama_metric_objects() -> list[Any]:
    from llama_index.core.evaluation.retrieval.metrics import resolve_metrics

    return [cls() for cls in resolve_metrics(list(metrics.LLAMA_METRICS))]


def _score(metric: Any, expected: list[str], retrieved: list[str]) -> Any:
    from llama_index.core.evaluation.retrieval.metrics_base import RetrievalMetricResult

    if not retrieved:
        return RetrievalMetricResult(score=0.0, metadata={"empty_retrieval": True})
    return metric.compute(expected_ids=expected, retrieved_ids=retrieved)


def llama_scores(metrics: list[Any], expected: list[str], retrieved: list[str]) -> dict[str, float]:
    return {m.metric_name: float(_score(m, expected, retrieved).score) for m in metrics}
