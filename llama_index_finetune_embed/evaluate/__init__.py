"""The evaluation stage: dataset + embed model (or retriever) -> metrics with intervals, per query.

``RetrievalEvaluator(dataset, **settings)(model)`` is the stage; the functions are thin forms of
it. Modules: ``evaluator`` (the evaluator and the public functions), ``fast`` (embed once, rank
by cosine), ``retriever`` (VectorStoreIndex + RetrieverEvaluator), ``metrics`` (numpy metrics and
the bootstrap), ``results`` (the result data), ``report`` (markdown and PNG; imported on use).
No torch is imported here.
"""

from llama_index_finetune_embed.evaluate.evaluator import (
    RetrievalEvaluator,
    compare_embed_models,
    embed_dataset,
    evaluate_embeddings,
    evaluate_retrieval,
    ir_metrics,
)
from llama_index_finetune_embed.evaluate.fast import DatasetEmbeddings
from llama_index_finetune_embed.evaluate.metrics import mrr_at_k
from llama_index_finetune_embed.evaluate.results import (
    ComparisonTable,
    PairedDiff,
    QueryRow,
    RetrievalResult,
    WinLossRow,
)
from llama_index_finetune_embed.evaluate.retriever import build_index

__all__ = [
    "ComparisonTable",
    "DatasetEmbeddings",
    "PairedDiff",
    "QueryRow",
    "RetrievalEvaluator",
    "RetrievalResult",
    "WinLossRow",
    "build_index",
    "compare_embed_models",
    "embed_dataset",
    "evaluate_embeddings",
    "evaluate_retrieval",
    "ir_metrics",
    "mrr_at_k",
]
