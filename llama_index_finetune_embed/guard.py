"""Moved to :mod:`llama_index_finetune_embed.finetune.guard`; this alias keeps old imports."""

from llama_index_finetune_embed.finetune.guard import (
    CANARY_PATH,
    METRIC,
    GuardCheck,
    GuardReport,
    RetrievalGuard,
    load_canary,
)

__all__ = ["CANARY_PATH", "METRIC", "GuardCheck", "GuardReport", "RetrievalGuard", "load_canary"]
