"""The model as trained and served: device, precision, prompts, length, dropout, frozen layers,
and the weight-space average with the base.

Imported lazily by the engine (torch loads here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from llama_index_finetune_embed._compat import native_bf16

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# model-name fragment -> (query prompt, document prompt), for models saved without prompts
_FAMILY_PROMPTS: dict[str, tuple[str, str]] = {
    "bge-": ("Represent this sentence for searching relevant passages: ", ""),
    "e5-": ("query: ", "passage: "),
    "nomic-embed": ("search_query: ", "search_document: "),
}

# -- prompts ------------------------------------------------------------------------------


def resolve_prompts(
    model: SentenceTransformer,
    model_id: str,
    query_prompt: str | None,
    document_prompt: str | None,
) -> tuple[str, str]:
    """(query prompt, document prompt): explicit > saved with the model > known family > ``""``."""
    from llama_index_finetune_embed.embeddings import prompt_pair

    saved_query, saved_doc = prompt_pair(dict(model.prompts or {}))
    family_query, family_doc = "", ""
    if not any((model.prompts or {}).values()):
        name = model_id.lower()
        for fragment, pair in _FAMILY_PROMPTS.items():
            if fragment in name and "bge-m3" not in name:
                family_query, family_doc = pair
                break
    query = query_prompt if query_prompt is not None else (saved_query or family_query)
    doc = document_prompt if document_prompt is not None else (saved_doc or family_doc)
    return query, doc


def default_max_seq_length(model: SentenceTransformer, cap: int = 512) -> int:
    """The longest input the model's position embeddings and tokenizer take, at most ``cap``."""
    limits = [cap]
    first = model[0]
    config = getattr(getattr(first, "auto_model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models reserve two positions for the padding offset
        offset = 2 if getattr(config, "model_type", "") in {"roberta", "xlm-roberta"} else 0
        limits.append(positions - offset)
        return min(limits)
    # Only without position embeddings to go by: sentence-transformers copies its configured
    # max_seq_length (256 for all-MiniLM-L6-v2, which takes 512) into the tokenizer's limit.
    tokenizer_max = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < 1_000_000:
        limits.append(tokenizer_max)
    return min(limits)

# -- precision and device -----------------------------------------------------------------


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast here: native bf16 on the GPU, AVX512-BF16/AMX on the CPU."""
    return native_bf16(device)


def default_device() -> str:
    """The GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


_ATTENTION_DROPOUT = re.compile(r"(attention\.(self\.)?dropout|attn_dropout|attention_dropout)$")


def set_dropout(model: SentenceTransformer, hidden: float | None, attention: float | None) -> None:
    """Set the dropout probabilities of the hidden and attention layers (``None``: keep)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            p = attention if _ATTENTION_DROPOUT.search(name) else hidden
            if p is not None:
                module.p = p


def freeze_lower_layers(model: SentenceTransformer, layers: int) -> int:
    """Freeze the token embeddings and the lowest ``layers`` encoder layers; return params frozen.

    Backward then stops early, which saves time on a CPU; the upper layers adapt to the domain.
    """
    if layers <= 0:
        return 0
    pattern = re.compile(r"(^|\.)(embeddings|(encoder\.)?layers?\.(\d+))\.")
    frozen = 0
    for name, param in model.named_parameters():
        match = pattern.search(name)
        if match and (match.group(4) is None or int(match.group(4)) < layers):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ValueError("freeze_layers: this model has no embeddings/encoder layers to freeze")
    return frozen


def weights_copy(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    """A detached copy of every weight (to average with, or restore, after training)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def average_with_base(
    model: SentenceTransformer, base_state: Mapping[str, torch.Tensor], base_weight: float
) -> None:
    """In place: every floating weight becomes ``base_weight * base + (1 - base_weight) * own``."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            base = base_state.get(name)
            if base is not None and tensor.is_floating_point():
                tensor.mul_(1.0 - base_weight).add_(base.to(tensor), alpha=base_weight)


def precision_flags(precision: str, device: str) -> dict[str, bool]:
    """``bf16``/``fp16`` training-argument flags for a precision choice on this device."""
    if precision == "auto":
        precision = "bf16" if bf16_supported(device) else "fp32"
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on the CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


__all__ = [
    "average_with_base",
    "bf16_supported",
    "default_device",
    "default_max_seq_length",
    "freeze_lower_layers",
    "precision_flags",
    "resolve_prompts",
    "set_dropout",
    "weights_copy",
]
