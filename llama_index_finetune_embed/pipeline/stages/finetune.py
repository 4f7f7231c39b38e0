"""Stage 4, finetune: the base model trained on the training pairs, resumable.

Reads ``job.datasets`` (the training pairs; the held-out questions for the guard), trains
``choices.base_model`` with the finetune engine and writes the model to ``DIR/model``, with
checkpoints in ``DIR/model/checkpoints`` (resumed only by a rerun of the same settings and pairs,
as ``DIR/model/checkpoints.inputs.json`` records); the ledger records the engine's numeric metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from llama_index_finetune_embed._io import atomic_write_text
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import Job, _pick
from llama_index_finetune_embed.pipeline.state import inputs_digest


def finetune_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return {
        "base_model": choices.base_model,
        **_pick(config, "epochs", "batch_size", "max_seq_length", "base_weight", "guard", "seed"),
    }


def finetune_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "model" / "model.safetensors", out / "model" / "modules.json")


def make_model(job: Job) -> dict[str, Any]:
    """Train the base model on the training pairs.

    The engine's guard checks the trained model against its base on the packaged canary and on
    the held-out questions (``val``: their chunks were split off before generation), and hands
    back the weights that do not lose (see ``finetune.guard``).
    """
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    config, (train, val) = job.config, job.datasets
    options: dict[str, Any] = {}
    for key in ("epochs", "batch_size", "max_seq_length", "base_weight"):
        if getattr(config, key) is not None:
            options[key] = getattr(config, key)
    resume = _checkpoints_to_resume(job.model_dir, job.inputs["finetune"], train)
    # about one checkpoint per epoch (batches count chunks): a kill loses at most that
    per_epoch = -(-len(train.corpus) // (config.batch_size or 16))
    engine = SentenceTransformersFinetuneEngine(
        train,
        model_id=job.choices.base_model,
        model_output_path=job.model_dir,
        seed=config.seed,
        checkpoint_steps=max(5, per_epoch),
        resume_from_checkpoint=resume,
        guard=config.guard,
        guard_checks={"held-out": val},
        **options,
    )
    engine.finetune()
    return {k: v for k, v in engine.metrics.items() if _is_number(v)}


def load_model(job: Job, record: dict[str, Any]) -> None:
    """Nothing to read back: later stages load the model from ``job.model_dir``."""


def _checkpoints_to_resume(
    model_dir: Path, inputs: dict[str, Any], train: EmbeddingQAFinetuneDataset
) -> bool:
    """Whether ``model_dir/checkpoints`` holds an interrupted training of this very stage (same
    settings, same pairs); checkpoints of other settings are deleted, never resumed."""
    marker, checkpoints = model_dir / "checkpoints.inputs.json", model_dir / "checkpoints"
    want = inputs_digest({**inputs, "train pairs": inputs_digest(train.model_dump())})
    have = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if have != want:
        shutil.rmtree(checkpoints, ignore_errors=True)
        atomic_write_text(marker, want + "\n")
        return False
    return checkpoints.is_dir() and any(checkpoints.iterdir())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
