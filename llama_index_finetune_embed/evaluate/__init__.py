"""Evaluation stage: dataset + embed model (or retriever) -> retrieval metrics, per query."""

from llama_index_finetune_embed.evaluate.evaluator import (
    ComparisonTable,
    DatasetEmbeddings,
    PairedDiff,
    QueryRow,
    RetrievalResult,
    WinLossRow,
    build_index,
    compare_embed_models,
    embed_dataset,
    evaluate_embeddings,
    evaluate_retrieval,
    ir_metrics,
)

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
