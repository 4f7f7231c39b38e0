"""llama-index-finetuning's arguments: the forms both engines take, and a warning for the rest.

An argument with no equivalent here is accepted (so the reference's code runs unchanged) and
warns once per process and argument, naming what happens instead: never a silent no-op.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["ReferenceArgumentWarning", "pick_dataset", "resolve_device", "warn_unused"]


class ReferenceArgumentWarning(UserWarning):
    """A llama-index-finetuning argument was accepted but is not used the same way here."""


def warn_unused(name: str, instead: str) -> None:
    """Warn (once per process for ``name``) that argument ``name`` is not used, and why."""
    warnings.warn(
        f"{name} is accepted for llama-index-finetuning compatibility but not used: {instead}",
        ReferenceArgumentWarning,
        stacklevel=3,
    )


def pick_dataset(dataset: Any, train_dataset: Any) -> Any:
    """The training set given as ``dataset`` (the reference's name) or ``train_dataset``."""
    if dataset is not None and train_dataset is not None:
        raise TypeError("pass the training set once: dataset= or train_dataset=, not both")
    if dataset is None and train_dataset is None:
        raise TypeError("missing the training set: pass it first (or as dataset=/train_dataset=)")
    return dataset if dataset is not None else train_dataset


def resolve_device(device: Any) -> str | None:
    """``device`` as a string (``torch.device("cuda:0")`` -> ``"cuda:0"``); ``None`` stays."""
    if device is None or isinstance(device, str):
        return device
    if type(device).__name__ == "device":  # torch.device, without importing torch here
        return str(device)
    raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")


def native_bf16(device: Any = "cpu") -> bool:
    """Whether ``device`` computes in bf16 natively, where bf16 weights or autocast run several
    times faster than fp32: a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX. Elsewhere bf16
    is emulated and slower (an AVX2-only CPU embeds ~6x slower in bf16 than in fp32).

    Example:
        >>> native_bf16("cpu") in (True, False)
        True
    """
    import torch

    kind = torch.device(device).type if not isinstance(device, str) else device.split(":")[0]
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    avx512 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((avx512 and avx512()) or (amx and amx()))
