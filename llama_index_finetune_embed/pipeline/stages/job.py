"""What every stage of the main job reads and fills: the :class:`Job` of one run.

A stage reads its settings (``job.config``, ``job.choices``) and what earlier stages made from the
job, and fills in what it makes (chunks, the split, the datasets, the report's choice); this
module writes nothing under ``--out`` itself. It also holds what several stages share: the
report's first row (:data:`BASE_ROW`), ``_pick`` (a stage's settings by name), the log and the
run's vector cache (:func:`run_vectors`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

logger = logging.getLogger("llama_index_finetune_embed.pipeline")

#: The report's first row: the base model as a LlamaIndex user already has it.
BASE_ROW = "base (as LlamaIndex loads it)"


@dataclass
class Job:
    """One run: its settings, the resolved choices, the output folder, each stage's inputs
    (``inputs[stage]``) and what the stages made so far."""

    config: RunConfig
    choices: Choices
    out: Path
    inputs: dict[str, dict[str, Any]]
    # chunks (a ChunkFile once the chunks stage ran: read from DIR/chunks.json as used)
    nodes: Sequence[TextNode] = field(default_factory=list)
    train_nodes: Sequence[TextNode] = field(default_factory=list)
    val_nodes: Sequence[TextNode] = field(default_factory=list)
    train: EmbeddingQAFinetuneDataset | None = None
    val: EmbeddingQAFinetuneDataset | None = None
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # what finished stages recorded
    table_markdown: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)  # the row the report chose (serve.py)

    @property
    def model_dir(self) -> Path:
        return self.out / "model"

    @property
    def index_dir(self) -> Path:
        return self.out / "index"

    @property
    def datasets(self) -> tuple[EmbeddingQAFinetuneDataset, EmbeddingQAFinetuneDataset]:
        assert self.train is not None and self.val is not None, "generate runs before this"
        return self.train, self.val


def _pick(config: RunConfig, *names: str) -> dict[str, Any]:
    return {name: getattr(config, name) for name in names}


def run_vectors(job: Job) -> Any:
    """The run's vector cache, ``DIR/vectors``: what the evaluate stage embedded (held-out
    chunks and questions), read back by the index stage."""
    from llama_index_finetune_embed.vectors import VectorCache

    return VectorCache(job.out / "vectors")


def vector_line(vectors: dict[str, dict[str, int]]) -> str:
    """``"held out: 1,204 texts embedded, 380 vectors reused; canary: ..."``."""
    return "; ".join(
        f"{name}: {c['texts embedded']:,} texts embedded, {c['vectors reused']:,} vectors reused"
        for name, c in vectors.items()
    )
