"""Finetune embedding models on your own documents for better LlamaIndex retrieval.

Public API only: re-exports, ``__all__`` and ``__version__``. Heavy libraries (torch,
sentence-transformers) are imported by the stage that needs them, not here.
"""

from llama_index_finetune_embed._version import __version__
from llama_index_finetune_embed.adapter import AdapterEmbedding, EmbeddingAdapterFinetuneEngine
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset, LabelledQADataset
from llama_index_finetune_embed.documents import (
    chunk_documents,
    load_documents,
    sample_chunks,
    stdlib_documents,
)
from llama_index_finetune_embed.embeddings import load_embed_model
from llama_index_finetune_embed.evaluate import (
    ComparisonTable,
    RetrievalEvaluator,
    RetrievalResult,
    compare_embed_models,
    evaluate_retrieval,
    ir_metrics,
)
from llama_index_finetune_embed.finetune import (
    FinetuneRecipe,
    GuardReport,
    RetrievalGuard,
    SentenceTransformersFinetuneEngine,
    load_canary,
    load_finetuned_model,
)
from llama_index_finetune_embed.generate import (
    DEFAULT_QA_GENERATE_PROMPT_TMPL,
    GenerationSettings,
    LocalLLM,
    OfflineSettings,
    agenerate_qa_embedding_pairs,
    estimate_qa_generation,
    generate_offline_pairs,
    generate_pseudo_queries,
    generate_qa_embedding_pairs,
    generate_question_context_pairs,
    offline_val_questions,
    parse_questions,
)
from llama_index_finetune_embed.pipeline import RunConfig, run_pipeline
from llama_index_finetune_embed.serving import (
    WindowIndex,
    build_window_index,
    index_nodes,
    load_window_index,
    write_window_index,
)
from llama_index_finetune_embed.vectors import VectorCache

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "AdapterEmbedding",
    "ComparisonTable",
    "EmbeddingAdapterFinetuneEngine",
    "EmbeddingQAFinetuneDataset",
    "FinetuneRecipe",
    "GenerationSettings",
    "GuardReport",
    "LabelledQADataset",
    "LocalLLM",
    "OfflineSettings",
    "RetrievalEvaluator",
    "RetrievalGuard",
    "RetrievalResult",
    "RunConfig",
    "SentenceTransformersFinetuneEngine",
    "VectorCache",
    "WindowIndex",
    "agenerate_qa_embedding_pairs",
    "build_window_index",
    "chunk_documents",
    "compare_embed_models",
    "estimate_qa_generation",
    "evaluate_retrieval",
    "generate_offline_pairs",
    "generate_pseudo_queries",
    "generate_qa_embedding_pairs",
    "generate_question_context_pairs",
    "index_nodes",
    "ir_metrics",
    "load_canary",
    "load_documents",
    "load_embed_model",
    "load_finetuned_model",
    "load_window_index",
    "offline_val_questions",
    "parse_questions",
    "run_pipeline",
    "sample_chunks",
    "stdlib_documents",
    "write_window_index",
    "__version__",
]
