"""Nodes + LLM -> (question, chunk) dataset: settings, bounded async run, parsing, resume cache.

Modules: ``settings`` (the options, validated once), ``pairs`` (the public functions), ``run``
(async calls, retries, progress), ``questions`` (parsing what the LLM wrote), ``cache`` (the
append-only resume cache), ``calls`` (what one LLM call raised or returned). Imports no torch.
"""

from llama_index_finetune_embed.generate.pairs import (
    DEFAULT_QA_GENERATE_PROMPT_TMPL,
    agenerate_qa_embedding_pairs,
    generate_qa_embedding_pairs,
    generate_question_context_pairs,
)
from llama_index_finetune_embed.generate.questions import parse_questions
from llama_index_finetune_embed.generate.settings import GenerationSettings

__all__ = [
    "DEFAULT_QA_GENERATE_PROMPT_TMPL",
    "GenerationSettings",
    "agenerate_qa_embedding_pairs",
    "generate_qa_embedding_pairs",
    "generate_question_context_pairs",
    "parse_questions",
]
