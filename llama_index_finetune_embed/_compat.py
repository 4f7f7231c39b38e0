"""llama-index-finetuning's arguments that have no equivalent here: one warning saying what we do.

Each such argument is accepted (so the reference's code runs unchanged) and warns once per
process and argument, naming what happens instead: never a silent no-op.
"""

from __future__ import annotations

import warnings

__all__ = ["ReferenceArgumentWarning", "warn_unused"]


class ReferenceArgumentWarning(UserWarning):
    """A llama-index-finetuning argument was accepted but is not used the same way here."""


def warn_unused(name: str, instead: str) -> None:
    """Warn (once per process for ``name``) that argument ``name`` is not used, and why."""
    warnings.warn(
        f"{name} is accepted for llama-index-finetuning compatibility but not used: {instead}",
        ReferenceArgumentWarning,
        stacklevel=3,
    )
