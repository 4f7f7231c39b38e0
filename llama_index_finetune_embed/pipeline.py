"""The main job: documents in, finetuned model + held-out report out, each stage resumable."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import BaseModel, Field

from llama_index_finetune_embed._io import atomic_write_json, atomic_write_text, writable_dir
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.embeddings import LOCAL_MINILM
from llama_index_finetune_embed.llms import Choices, make_llm, resolve_choices

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

logger = logging.getLogger(__name__)

#: The report's first row: the base model as a LlamaIndex user already has it.
BASE_ROW = "base (as LlamaIndex loads it)"


class RunConfig(BaseModel):
    """Settings of one ``finetune-embed run``; every field has an offline-friendly default.

    The CLI builds its options from these fields (flag ``--chunk-size`` for ``chunk_size``, type,
    default, choices and help from the field), so a default is written here only.

    Example:
        >>> RunConfig(out="runs/demo", max_chunks=200).llm
        'auto'
    """

    docs: list[str] = Field(
        default_factory=list, description="files/folders; empty = stdlib topics"
    )
    out: str = Field(description="output directory; reruns resume from what is there")
    llm: str = Field(
        default="auto",
        description="auto (OpenAI if OPENAI_API_KEY is set, else local), local, none, openai:MODEL",
    )
    base_model: str = Field(
        default=LOCAL_MINILM,
        description="model id or path, e.g. BAAI/bge-small-en-v1.5 (default: the packaged "
        "all-MiniLM-L6-v2)",
    )
    chunk_size: int = Field(default=512, gt=16, description="tokens per chunk")
    chunk_overlap: int = Field(default=64, ge=0, description="token overlap between chunks")
    max_chunks: int | None = Field(
        default=None, gt=1, description="sample at most this many chunks (unset: all)"
    )
    questions_per_chunk: int = Field(default=2, gt=0, description="questions asked per chunk")
    val_ratio: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="share of chunks held out for the report"
    )
    epochs: int | None = Field(
        default=None, gt=0, description="training epochs (unset: the recipe's)"
    )
    batch_size: int | None = Field(
        default=None, gt=1, description="chunks per training batch (unset: the recipe's)"
    )
    max_seq_length: int | None = Field(
        default=None, gt=8, description="tokens per text (unset: the model's maximum)"
    )
    base_weight: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="base share of the averaged weights, 0 = as trained (unset: the recipe's 0.5)",
    )
    guard: bool = Field(
        default=True,
        description="check the model against its base and hand back the better (see README)",
    )
    top_k: int = Field(default=5, gt=0, description="retrieval depth for the report")
    num_workers: int = Field(default=16, gt=0, description="LLM calls in flight")
    offline_train: Literal["mix", "pseudo"] = Field(
        default="pseudo",
        description="offline training pairs: inverse-cloze pseudo-queries (pseudo, measured "
        "best) or local-LLM questions + pseudo-queries (mix)",
    )
    seed: int = Field(default=0, description="seed of sampling, splitting and training")


class Stages:
    """``DIR/stages.json``: which stages finished, so a rerun skips them (written atomically)."""

    def __init__(self, out: Path, config: RunConfig) -> None:
        self.path = out / "stages.json"
        self.config = config
        self.done: dict[str, Any] = {}
        if self.path.is_file():
            state = json.loads(self.path.read_text(encoding="utf-8"))
            self._check_same_inputs(state.get("config", {}))
            self.done = state.get("done", {})

    def _check_same_inputs(self, old: dict[str, Any]) -> None:
        keys = ("docs", "chunk_size", "chunk_overlap", "max_chunks", "val_ratio", "seed")
        changed = [k for k in keys if old.get(k) != getattr(self.config, k)]
        if changed:
            raise ValueError(
                f"{self.path.parent} holds a run with different {', '.join(changed)}; "
                "use a new --out directory (or delete this one) to start over"
            )

    def finished(self, name: str, *outputs: Path) -> bool:
        return name in self.done and all(p.exists() for p in outputs)

    def mark(self, name: str, **info: Any) -> None:
        self.done[name] = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        atomic_write_json(self.path, {"config": self.config.model_dump(), "done": self.done})


def load_chunks(config: RunConfig, out: Path, stages: Stages) -> list[TextNode]:
    """Stage 1: documents -> chunks (``DIR/chunks.json``), sampled down to ``max_chunks``."""
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.documents import (
        chunk_documents,
        load_documents,
        sample_chunks,
        stdlib_documents,
    )

    path = out / "chunks.json"
    if stages.finished("chunks", path):
        data = json.loads(path.read_text(encoding="utf-8"))
        return [TextNode.from_dict(d) for d in data]
    docs = load_documents(config.docs, show_progress=True) if config.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"only {len(nodes)} chunk(s) of text found; need at least 2 to split")
    atomic_write_json(path, [n.to_dict() for n in nodes], indent=None)
    stages.mark("chunks", documents=len(docs), chunks=len(nodes))
    return nodes


def split_chunks(
    nodes: Sequence[TextNode], config: RunConfig, out: Path, stages: Stages
) -> tuple[list[TextNode], list[TextNode]]:
    """Stage 2: chunks -> (train, val) by chunk, recorded in ``DIR/split.json``."""
    path = out / "split.json"
    if stages.finished("split", path):
        ids = json.loads(path.read_text(encoding="utf-8"))
    else:
        order = [n.node_id for n in nodes]
        random.Random(config.seed).shuffle(order)
        n_val = min(len(order) - 1, max(1, round(config.val_ratio * len(order))))
        ids = {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}
        atomic_write_json(path, ids)
        stages.mark("split", train=len(ids["train"]), val=len(ids["val"]))
    val_ids = set(ids["val"])
    return [n for n in nodes if n.node_id not in val_ids], [
        n for n in nodes if n.node_id in val_ids
    ]


def generate_datasets(
    train_nodes: Sequence[TextNode],
    val_nodes: Sequence[TextNode],
    choices: Choices,
    config: RunConfig,
    out: Path,
    stages: Stages,
) -> tuple[EmbeddingQAFinetuneDataset, EmbeddingQAFinetuneDataset]:
    """Stage 3: questions for train and val chunks (``DIR/{train,val}_dataset.json``).

    With an API LLM both sides get LLM questions. Offline, training pairs are inverse-cloze
    pseudo-queries (plus filtered local-LLM questions with ``offline_train="mix"``) and held-out
    questions come from the local LLM alone, so the report measures retrieval of questions.
    Finished chunks are cached in ``DIR/cache/*.jsonl``: an interrupted run loses nothing.
    """
    train_path, val_path = out / "train_dataset.json", out / "val_dataset.json"
    if stages.finished("generate", train_path, val_path):
        return (
            EmbeddingQAFinetuneDataset.from_json(train_path),
            EmbeddingQAFinetuneDataset.from_json(val_path),
        )
    llm = make_llm(choices.llm)
    cache = out / "cache"
    train = training_pairs(train_nodes, choices.llm, llm, config, cache / "train.jsonl")
    if choices.llm.startswith("openai:"):
        val = _llm_questions(val_nodes, llm, config, cache / "val.jsonl")
    else:
        from llama_index_finetune_embed.offline import offline_val_questions

        val = offline_val_questions(
            val_nodes,
            llm=llm,
            questions_per_chunk=config.questions_per_chunk,
            cache_path=cache / "val.jsonl",
            seed=config.seed,
        )
    for name, ds in (("training", train), ("held-out", val)):
        if len(ds) == 0:
            raise ValueError(f"no usable {name} questions were generated; see the log above")
    train.save_json(train_path)
    val.save_json(val_path)
    stages.mark("generate", train_queries=len(train), val_queries=len(val))
    return train, val


def training_pairs(
    nodes: Sequence[TextNode], choice: str, llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    """Training pairs for ``nodes``: API-LLM questions, or the offline pairs (resumable cache)."""
    if choice.startswith("openai:"):
        return _llm_questions(nodes, llm, config, cache_path)
    from llama_index_finetune_embed.offline import generate_offline_pairs

    return generate_offline_pairs(
        nodes,
        llm=llm if config.offline_train == "mix" else None,
        questions_per_chunk=config.questions_per_chunk,
        cache_path=cache_path,
        seed=config.seed,
    )


def _llm_questions(
    nodes: Sequence[TextNode], llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    from llama_index_finetune_embed.generate import generate_qa_embedding_pairs

    return generate_qa_embedding_pairs(
        nodes,
        llm=llm,
        num_questions_per_chunk=config.questions_per_chunk,
        num_workers=config.num_workers,
        cache_path=cache_path,
        show_progress=True,
        seed=config.seed,
    )


def finetune_model(
    train: EmbeddingQAFinetuneDataset,
    val: EmbeddingQAFinetuneDataset,
    choices: Choices,
    config: RunConfig,
    out: Path,
    stages: Stages,
) -> Path:
    """Stage 4: train the base model on the training pairs (``DIR/model``), resumable.

    The engine's guard checks the trained model against its base on the packaged canary and on
    the held-out questions (``val``: their chunks were split off before generation), and hands
    back the weights that do not lose (see ``guard``).
    """
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    model_dir = out / "model"
    if stages.finished("finetune", model_dir):
        return model_dir
    options: dict[str, Any] = {}
    for key in ("epochs", "batch_size", "max_seq_length", "base_weight"):
        if getattr(config, key) is not None:
            options[key] = getattr(config, key)
    checkpoints = model_dir / "checkpoints"
    engine = SentenceTransformersFinetuneEngine(
        train,
        model_id=choices.base_model,
        model_output_path=model_dir,
        seed=config.seed,
        resume_from_checkpoint=checkpoints.is_dir() and any(checkpoints.iterdir()),
        guard=config.guard,
        guard_checks={"held-out": val},
        **options,
    )
    engine.finetune()
    stages.mark("finetune", **{k: v for k, v in engine.metrics.items() if _is_number(v)})
    return model_dir


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class PipelineResult(BaseModel):
    """Where a run left its outputs, and the comparison table as markdown."""

    out: str
    model_path: str
    report_path: str
    plot_path: str
    table_markdown: str
    metrics: dict[str, dict[str, float]]


def evaluate_models(
    train: EmbeddingQAFinetuneDataset,
    val: EmbeddingQAFinetuneDataset,
    choices: Choices,
    model_dir: Path,
    config: RunConfig,
    out: Path,
    stages: Stages,
) -> Any:
    """Stage 5: base vs finetuned on the held-out questions -> ``DIR/report.{md,png,json}``.

    The first row, which every difference is measured against, is the base model exactly as
    LlamaIndex loads it (``HuggingFaceEmbedding(model_name=...)``: its configured length, long
    chunks truncated): what the user has before finetuning. The finetuned model is served as
    ``get_finetuned_model()`` serves it.
    """
    from llama_index_finetune_embed.evaluate import compare_embed_models
    from llama_index_finetune_embed.evaluate.report import render_run_report

    table = compare_embed_models(
        val,
        {BASE_ROW: choices.base_model, "finetuned": str(model_dir)},
        top_k=config.top_k,
        seed=config.seed,
        show_progress=True,
    )
    table.plot(out / "report.png")
    atomic_write_json(out / "report.json", table.to_dict())
    atomic_write_text(
        out / "report.md", render_run_report(table, train, val, choices, config, stages)
    )
    stages.mark("evaluate")
    return table


def run_pipeline(
    config: RunConfig, *, announce: Callable[[str], None] = logger.info
) -> PipelineResult:
    """Run every stage, skipping those whose outputs a previous run left in ``config.out``.

    Example:
        >>> result = run_pipeline(RunConfig(out="runs/demo"))  # doctest: +SKIP
        >>> print(result.table_markdown)  # doctest: +SKIP
    """
    out = writable_dir(config.out, "output directory")
    choices = resolve_choices(config)
    announce(f"question source: {choices.llm} ({choices.llm_reason})")
    announce(f"base model: {config.base_model} ({choices.base_model_reason})")
    stages = Stages(out, config)
    started = time.perf_counter()
    nodes = load_chunks(config, out, stages)
    train_nodes, val_nodes = split_chunks(nodes, config, out, stages)
    announce(f"chunks: {len(nodes)} ({len(train_nodes)} train / {len(val_nodes)} held out)")
    train, val = generate_datasets(train_nodes, val_nodes, choices, config, out, stages)
    announce(f"pairs: {len(train)} for training, {len(val)} held-out questions")
    model_dir = finetune_model(train, val, choices, config, out, stages)
    announce(f"model: {model_dir}")
    table = evaluate_models(train, val, choices, model_dir, config, out, stages)
    announce(f"finished in {time.perf_counter() - started:.0f} s")
    metrics = {r.name: dict(r.metrics) for r in table.results}
    return PipelineResult(
        out=str(out),
        model_path=str(model_dir),
        report_path=str(out / "report.md"),
        plot_path=str(out / "report.png"),
        table_markdown=table.to_markdown(),
        metrics=metrics,
    )
