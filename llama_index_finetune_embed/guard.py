"""Moved to :mod:`llama_index_finetune_embed.finetune.guard`; this alias keeps old imports."""

import warnings

from llama_index_finetune_embed.finetune.guard import (
    CANARY_PATH,
    METRIC,
    GuardCheck,
    GuardReport,
    RetrievalGuard,
    load_canary,
)

warnings.warn(
    "llama_index_finetune_embed.guard moved to llama_index_finetune_embed.finetune.guard "
    "(or import its names from llama_index_finetune_embed)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["CANARY_PATH", "METRIC", "GuardCheck", "GuardReport", "RetrievalGuard", "load_canary"]
