"""llama-index-finetuning's engine arguments, mapped onto this engine's options.

``SentenceTransformersFinetuneEngine`` takes llama-index-finetuning 0.4.2's arguments in its
positional order. Those with an equivalent here become recipe options (checkpoints, resuming,
evaluation steps); those without one are accepted and warn once, saying what happens instead.
"""

from __future__ import annotations

from typing import Any

from llama_index_finetune_embed._compat import warn_unused

__all__ = ["checkpoint_options", "resolve_progress"]

#: llama-index-finetuning's ``checkpoint_save_steps`` default.
REFERENCE_CHECKPOINT_STEPS = 500


def resolve_progress(show_progress_bar: bool | None, show_progress: bool | None) -> bool | None:
    """``show_progress_bar`` (the reference's name) or ``show_progress``; they must agree."""
    if show_progress_bar is None:
        return show_progress
    if show_progress is not None and show_progress != show_progress_bar:
        raise ValueError(
            f"show_progress_bar={show_progress_bar} and show_progress={show_progress} disagree: "
            "they are the same setting; give one of them"
        )
    return bool(show_progress_bar)


def checkpoint_options(
    options: dict[str, Any],
    *,
    has_val: bool,
    evaluation_steps: int | None,
    use_all_docs: bool | None,
    save_checkpoints: bool,
    resume_from_checkpoint: bool | None,
    checkpoint_save_steps: int | None,
    checkpoint_save_total_limit: int | None,
) -> dict[str, Any]:
    """``options`` plus the recipe fields the reference's arguments stand for.

    ``save_checkpoints`` keeps checkpoints every ``checkpoint_save_steps`` (default 500, the
    reference's) in ``model_output_path/checkpoints``; ``evaluation_steps`` (with a val set)
    evaluates every N steps. Here evaluation and checkpoints share one step count (the best
    checkpoint by val MRR@10 is kept), so the two must agree when both are given.
    """
    out = dict(options)
    steps: dict[str, int] = {}
    if save_checkpoints:
        out.setdefault("keep_checkpoints", True)
        steps["checkpoint_save_steps"] = checkpoint_save_steps or REFERENCE_CHECKPOINT_STEPS
    elif checkpoint_save_steps is not None:
        warn_unused(
            "checkpoint_save_steps", "as in llama-index-finetuning, it applies only with "
            "save_checkpoints=True (or pass checkpoint_steps=)",
        )  # fmt: skip
    if evaluation_steps is not None:
        if has_val:
            steps["evaluation_steps"] = evaluation_steps
        else:
            warn_unused("evaluation_steps", "there is no val_dataset to evaluate")
    if len(set(steps.values())) > 1:
        raise ValueError(
            f"evaluation_steps={steps['evaluation_steps']} and checkpoint_save_steps="
            f"{steps['checkpoint_save_steps']} differ: here the val set is evaluated when a "
            "checkpoint is saved (the best one is kept); give them one value"
        )
    if steps:
        _set(out, "checkpoint_steps", next(iter(steps.values())), next(iter(steps)))
    if resume_from_checkpoint is not None:
        _set(out, "resume_from_checkpoint", bool(resume_from_checkpoint), "resume_from_checkpoint")
    if use_all_docs is False:
        warn_unused(
            "use_all_docs=False", "every relevant chunk of a query is a training pair "
            "(a query's other relevant chunks are never its negatives)",
        )  # fmt: skip
    if checkpoint_save_total_limit is not None:
        warn_unused(
            "checkpoint_save_total_limit", "at most 2 checkpoints are kept (the best and the "
            "last), and removed after a successful run unless save_checkpoints=True",
        )  # fmt: skip
    return out


def _set(options: dict[str, Any], key: str, value: Any, given_as: str) -> None:
    if key in options and options[key] != value:
        raise ValueError(
            f"{given_as} and {key}={options[key]!r} disagree: they set the same option; "
            "give one of them"
        )
    options[key] = value
