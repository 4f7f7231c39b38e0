"""Finetune embedding models on your own documents for better LlamaIndex retrieval.

Public API only: re-exports, ``__all__`` and ``__version__``. Heavy libraries (torch,
sentence-transformers) are imported by the stage that needs them, not here.
"""

from llama_index_finetune_embed._models import load_embed_model
from llama_index_finetune_embed.adapter import AdapterEmbedding, EmbeddingAdapterFinetuneEngine
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.documents import chunk_documents, load_documents, stdlib_documents
from llama_index_finetune_embed.evaluate import (
    ComparisonTable,
    RetrievalResult,
    compare_embed_models,
    evaluate_retrieval,
    ir_metrics,
)
from llama_index_finetune_embed.finetune import (
    SentenceTransformersFinetuneEngine,
    load_finetuned_model,
)
from llama_index_finetune_embed.generate import (
    DEFAULT_QA_GENERATE_PROMPT_TMPL,
    agenerate_qa_embedding_pairs,
    generate_qa_embedding_pairs,
    parse_questions,
)
from llama_index_finetune_embed.guard import GuardReport, RetrievalGuard, load_canary
from llama_index_finetune_embed.llms import LocalLLM
from llama_index_finetune_embed.pseudo import generate_offline_pairs, generate_pseudo_queries

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "AdapterEmbedding",
    "ComparisonTable",
    "EmbeddingAdapterFinetuneEngine",
    "EmbeddingQAFinetuneDataset",
    "GuardReport",
    "LocalLLM",
    "RetrievalGuard",
    "RetrievalResult",
    "SentenceTransformersFinetuneEngine",
    "chunk_documents",
    "compare_embed_models",
    "agenerate_qa_embedding_pairs",
    "evaluate_retrieval",
    "generate_offline_pairs",
    "generate_pseudo_queries",
    "generate_qa_embedding_pairs",
    "ir_metrics",
    "load_canary",
    "load_embed_model",
    "load_finetuned_model",
    "load_documents",
    "parse_questions",
    "stdlib_documents",
    "__version__",
]
