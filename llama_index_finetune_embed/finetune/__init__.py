"""The finetune stage: a dataset of (question, chunk) pairs in, a finetuned embed model out.

``engine`` (the engine and :func:`load_finetuned_model`), ``recipe`` (the validated training
options), ``sampler`` (which rows may share a batch), ``losses``, ``negatives`` (hard negatives),
``model`` (device, precision, prompts, length, dropout, averaging with the base), ``trainer``
(training arguments and the trainer), ``model_card`` (metrics.json and the card), ``guard`` (keep
only weights that do not lose to the base), ``saving`` (a failed save writes the model to a
rescue folder), ``reference_args`` (llama-index-finetuning's engine arguments mapped onto the
recipe). Re-exports only; torch loads when training starts.
"""

from llama_index_finetune_embed.finetune.engine import (
    SentenceTransformersFinetuneEngine,
    load_finetuned_model,
)
from llama_index_finetune_embed.finetune.guard import (
    GuardCheck,
    GuardReport,
    RetrievalGuard,
    load_canary,
)
from llama_index_finetune_embed.finetune.recipe import FinetuneRecipe, Precision
from llama_index_finetune_embed.finetune.saving import ModelSaveError

__all__ = [
    "FinetuneRecipe",
    "GuardCheck",
    "GuardReport",
    "ModelSaveError",
    "Precision",
    "RetrievalGuard",
    "SentenceTransformersFinetuneEngine",
    "load_canary",
    "load_finetuned_model",
]
