"""Stage 2, split: chunks -> (train, held out), by chunk.

Reads ``job.nodes``, draws the held-out chunks (``val_ratio`` of them, at least one on each side)
with the run's seed, writes their ids to ``DIR/split.json`` and fills ``job.train_nodes`` and
``job.val_nodes``; questions are written after the split, so no held-out chunk is trained on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._io import atomic_write_json
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import Job, _pick

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode


def split_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return _pick(config, "val_ratio", "seed")


def split_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "split.json",)


def make_split(job: Job) -> dict[str, Any]:
    ids = split_ids(job.nodes, job.config)
    atomic_write_json(job.out / "split.json", ids)
    _apply_split(job, ids)
    return {"train": len(ids["train"]), "val": len(ids["val"])}


def split_ids(nodes: Sequence[TextNode], config: RunConfig) -> dict[str, list[str]]:
    """Chunk ids of the training and held-out sides, drawn with the run's seed."""
    order = [n.node_id for n in nodes]
    random.Random(config.seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(config.val_ratio * len(order))))
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}


def load_split(job: Job, record: dict[str, Any]) -> None:
    _apply_split(job, json.loads((job.out / "split.json").read_text(encoding="utf-8")))


def _apply_split(job: Job, ids: dict[str, list[str]]) -> None:
    # job.nodes is the chunks stage's ChunkFile: the two sides are views, read as they are used
    job.train_nodes, job.val_nodes = job.nodes.views(ids["train"], ids["val"])


def split_nodes(
    nodes: Sequence[TextNode], ids: dict[str, list[str]]
) -> tuple[list[TextNode], list[TextNode]]:
    """(training, held-out) nodes, in their order, by the ids of :func:`split_ids`."""
    val_ids = set(ids["val"])
    train = [n for n in nodes if n.node_id not in val_ids]
    return train, [n for n in nodes if n.node_id in val_ids]
