"""Nodes + LLM -> (question, chunk) dataset: settings, bounded async run, parsing, resume cache.

Modules: ``settings`` (the options, validated once), ``pairs`` (the public functions), ``run``
(async calls, retries, progress), ``questions`` (parsing what the LLM wrote), ``cache`` (the
append-only resume cache), ``calls`` (what one LLM call raised or returned). Without an API:
``offline`` (the offline generator: local-LLM questions through a strict filter, plus
pseudo-queries), ``pseudo`` (inverse-cloze pseudo-queries and crops, no LLM), ``llms``
(:class:`LocalLLM`, SmolLM2 on CPU), ``_gguf`` (its runtime), ``_sentences`` (sentence
splitting). Imports no torch.
"""

from llama_index_finetune_embed.generate.cache import carry_over
from llama_index_finetune_embed.generate.estimate import (
    PRICES,
    EmbeddingEstimate,
    GenerationEstimate,
    estimate_embeddings,
    estimate_qa_generation,
)
from llama_index_finetune_embed.generate.llms import LocalLLM
from llama_index_finetune_embed.generate.offline import (
    OfflineSettings,
    generate_offline_pairs,
    offline_val_questions,
)
from llama_index_finetune_embed.generate.pairs import (
    DEFAULT_QA_GENERATE_PROMPT_TMPL,
    agenerate_qa_embedding_pairs,
    generate_qa_embedding_pairs,
    generate_question_context_pairs,
)
from llama_index_finetune_embed.generate.pseudo import generate_pseudo_queries
from llama_index_finetune_embed.generate.questions import parse_questions
from llama_index_finetune_embed.generate.settings import GenerationSettings

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "GenerationEstimate",
    "GenerationSettings",
    "LocalLLM",
    "OfflineSettings",
    "PRICES",
    "agenerate_qa_embedding_pairs",
    "carry_over",
    "estimate_qa_generation",
    "estimate_embeddings",
    "EmbeddingEstimate",
    "generate_offline_pairs",
    "generate_pseudo_queries",
    "generate_qa_embedding_pairs",
    "generate_question_context_pairs",
    "offline_val_questions",
    "parse_questions",
]
