"""The main job: documents in, finetuned model + held-out report out, each stage resumable."""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import BaseModel, Field

from llama_index_finetune_embed._io import atomic_write_json, atomic_write_text, writable_dir
from llama_index_finetune_embed._run_state import RunState, inputs_digest, run_lock, stage_inputs
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.embeddings import LOCAL_MINILM, check_max_seq_length
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
    max_train_chunks: int = Field(
        default=1000,
        gt=1,
        description="offline: pseudo-queries from at most this many training chunks, sampled "
        "(more trains longer and forgot more on questions people wrote; see README)",
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


def load_chunks(config: RunConfig, out: Path, stages: RunState) -> list[TextNode]:
    """Stage 1: documents -> chunks (``DIR/chunks.json``), sampled down to ``max_chunks``."""
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.documents import (
        chunk_documents,
        find_documents,
        load_documents,
        sample_chunks,
        stdlib_documents,
    )

    path = out / "chunks.json"
    if stages.finished("chunks", path):
        data = json.loads(path.read_text(encoding="utf-8"))
        return [TextNode.from_dict(d) for d in data]
    skipped = find_documents(config.docs)[1] if config.docs else []
    docs = load_documents(config.docs) if config.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"only {len(nodes)} chunk(s) of text found; need at least 2 to split")
    atomic_write_json(path, [n.to_dict() for n in nodes], indent=None)
    stages.mark("chunks", documents=len(docs), chunks=len(nodes), skipped_files=len(skipped))
    return nodes


def split_chunks(
    nodes: Sequence[TextNode], config: RunConfig, out: Path, stages: RunState
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
    stages: RunState,
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
    train_cache = _cache_for("train", train_nodes, out, stages)
    val_cache = _cache_for("val", val_nodes, out, stages)
    train = training_pairs(train_nodes, choices.llm, llm, config, train_cache)
    if choices.llm.startswith("openai:"):
        val = _llm_questions(val_nodes, llm, config, val_cache)
    else:
        from llama_index_finetune_embed.offline import offline_val_questions

        val = offline_val_questions(
            val_nodes,
            llm=llm,
            questions_per_chunk=config.questions_per_chunk,
            cache_path=val_cache,
            seed=config.seed,
        )
    for name, ds in (("training", train), ("held-out", val)):
        if len(ds) == 0:
            raise ValueError(f"no usable {name} questions were generated; see the log above")
    train.save_json(train_path)
    val.save_json(val_path)
    stages.mark("generate", train_queries=len(train), val_queries=len(val))
    return train, val


def _cache_for(side: str, nodes: Sequence[TextNode], out: Path, stages: RunState) -> Path:
    """The generation cache of one side: one file per question settings and set of chunks,
    started from earlier files of the same settings (a file holds chunks keyed by id and text
    hash), so edited documents or a new split ask the LLM again only for changed chunks."""
    from llama_index.core.schema import MetadataMode

    from llama_index_finetune_embed.generate.cache import carry_over

    texts = {n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}
    # the cap picks which chunks get questions, not how they are asked: a new cap reuses them
    asked = {k: v for k, v in stages.inputs["generate"].items() if k != "max_train_chunks"}
    settings = inputs_digest(asked)
    path = out / "cache" / f"{side}-{settings}-{inputs_digest(texts)}.jsonl"
    if not path.exists():
        # either side's: a chunk that moved between train and held out keeps its questions
        earlier = sorted((out / "cache").glob(f"*-{settings}-*.jsonl"),
                         key=lambda p: p.stat().st_mtime, reverse=True)  # fmt: skip
        carried = carry_over(earlier, path, texts)
        if carried:
            logger.info("%s questions: %d unchanged chunks reused from earlier runs", side, carried)
    return path


def training_pairs(
    nodes: Sequence[TextNode], choice: str, llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    """Training pairs for ``nodes``: API-LLM questions, or the offline pairs (resumable cache)
    over at most ``config.max_train_chunks`` of them."""
    if choice.startswith("openai:"):
        return _llm_questions(nodes, llm, config, cache_path)
    from llama_index_finetune_embed.documents import sample_chunks
    from llama_index_finetune_embed.offline import generate_offline_pairs

    if len(nodes) > config.max_train_chunks:
        logger.info(
            "offline training pairs from %d of %d training chunks (max_train_chunks)",
            config.max_train_chunks, len(nodes),
        )  # fmt: skip
    return generate_offline_pairs(
        sample_chunks(nodes, config.max_train_chunks, seed=config.seed),
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
    stages: RunState,
) -> Path:
    """Stage 4: train the base model on the training pairs (``DIR/model``), resumable.

    The engine's guard checks the trained model against its base on the packaged canary and on
    the held-out questions (``val``: their chunks were split off before generation), and hands
    back the weights that do not lose (see ``guard``).
    """
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    model_dir = out / "model"
    if stages.finished("finetune", model_dir / "model.safetensors", model_dir / "modules.json"):
        return model_dir
    options: dict[str, Any] = {}
    for key in ("epochs", "batch_size", "max_seq_length", "base_weight"):
        if getattr(config, key) is not None:
            options[key] = getattr(config, key)
    resume = _checkpoints_to_resume(model_dir, stages.inputs["finetune"], train)
    # about one checkpoint per epoch (batches count chunks): a kill loses at most that
    per_epoch = -(-len(train.corpus) // (config.batch_size or 16))
    engine = SentenceTransformersFinetuneEngine(
        train,
        model_id=choices.base_model,
        model_output_path=model_dir,
        seed=config.seed,
        checkpoint_steps=max(5, per_epoch),
        resume_from_checkpoint=resume,
        guard=config.guard,
        guard_checks={"held-out": val},
        **options,
    )
    engine.finetune()
    stages.mark("finetune", **{k: v for k, v in engine.metrics.items() if _is_number(v)})
    return model_dir


def _checkpoints_to_resume(
    model_dir: Path, inputs: dict[str, Any], train: EmbeddingQAFinetuneDataset
) -> bool:
    """Whether ``model_dir/checkpoints`` holds an interrupted training of this very stage (same
    settings, same pairs); checkpoints of other settings are deleted, never resumed."""
    import shutil

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


def index_chunks(nodes: Sequence[TextNode], model_dir: Path, out: Path, stages: RunState) -> Path:
    """Stage 6: every chunk in ``build_window_index`` with the finetuned model -> ``DIR/index``.

    Windows, because reading each chunk whole and scoring it by its best window won or tied on
    every set measured (README, "Long chunks"); ``load_window_index(DIR/index)`` loads it.
    """
    from llama_index_finetune_embed.finetune import load_finetuned_model
    from llama_index_finetune_embed.serving import build_window_index
    from llama_index_finetune_embed.serving.index import CONFIG_NAME

    path = out / "index"
    if stages.finished("index", path / CONFIG_NAME, path / "docstore.json"):
        return path
    index = build_window_index(nodes, load_finetuned_model(model_dir), show_progress=True)
    staging = out / ".index.part"
    shutil.rmtree(staging, ignore_errors=True)
    index.persist(staging)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)  # a killed run leaves the old index or none, never half of one
    stages.mark("index", chunks=len(nodes), vectors=len(index.index_struct.nodes_dict))
    return path


class PipelineResult(BaseModel):
    """Where a run left its outputs, and the comparison table as markdown."""

    out: str
    model_path: str
    index_path: str
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
    stages: RunState,
) -> tuple[str, dict[str, dict[str, float]]]:
    """Stage 5: base vs finetuned on the held-out questions -> ``DIR/report.{md,png,json}``.

    The first row, which every difference is measured against, is the base model exactly as
    LlamaIndex loads it (``HuggingFaceEmbedding(model_name=...)``: its configured length, long
    chunks truncated): what the user has before finetuning. The finetuned model is served as
    ``get_finetuned_model()`` serves it. Each model is also scored in ``build_window_index``
    (rows ``... + windows``): four rows in all.
    """
    from llama_index_finetune_embed.evaluate import compare_embed_models
    from llama_index_finetune_embed.evaluate.run_report import render_run_report

    report = out / "report.md"
    if stages.finished("evaluate", report, out / "report.json", out / "report.png"):
        done = stages.done["evaluate"]
        return done["table_markdown"], done["metrics"]
    table = compare_embed_models(
        val,
        {BASE_ROW: choices.base_model, "finetuned": str(model_dir)},
        index="both",
        top_k=config.top_k,
        seed=config.seed,
        show_progress=True,
    )
    table.plot(out / "report.png")
    atomic_write_json(out / "report.json", table.to_dict())
    atomic_write_text(report, render_run_report(table, train, val, choices, config, stages))
    metrics = {r.name: dict(r.metrics) for r in table.results}
    stages.mark("evaluate", table_markdown=table.to_markdown(), metrics=metrics)
    return table.to_markdown(), metrics


def run_pipeline(
    config: RunConfig,
    *,
    restart: str | None = None,
    announce: Callable[[str], None] = logger.info,
) -> PipelineResult:
    """Run every stage, reusing those a previous run in ``config.out`` made from the same inputs.

    A rerun reuses exactly the stages whose inputs (documents, settings, package version) are
    unchanged and redoes the first changed one and all after it, announcing one line per stage.
    ``restart`` names a stage to redo on purpose (with every later one). ``config.out`` is
    locked for the run: a second run on it stops with one clear error.

    Example:
        >>> result = run_pipeline(RunConfig(out="runs/demo"))  # doctest: +SKIP
        >>> print(result.table_markdown)  # doctest: +SKIP
    """
    out = writable_dir(config.out, "output directory")
    choices = resolve_choices(config)
    check_max_seq_length(choices.base_model, config.max_seq_length)
    with run_lock(out):
        announce(f"question source: {choices.llm} ({choices.llm_reason})")
        announce(f"base model: {config.base_model} ({choices.base_model_reason})")
        stages = RunState(out, stage_inputs(config, choices), restart=restart)
        if not stages.fresh or restart:
            for line in stages.plan_lines():
                announce(line)
        started = time.perf_counter()
        nodes = load_chunks(config, out, stages)
        train_nodes, val_nodes = split_chunks(nodes, config, out, stages)
        announce(f"chunks: {len(nodes)} ({len(train_nodes)} train / {len(val_nodes)} held out)")
        train, val = generate_datasets(train_nodes, val_nodes, choices, config, out, stages)
        announce(f"pairs: {len(train)} for training, {len(val)} held-out questions")
        model_dir = finetune_model(train, val, choices, config, out, stages)
        announce(f"model: {model_dir}")
        table_markdown, metrics = evaluate_models(
            train, val, choices, model_dir, config, out, stages
        )
        index_path = index_chunks(nodes, model_dir, out, stages)
        announce(f"index: {index_path} (load_window_index)")
        announce(f"finished in {time.perf_counter() - started:.0f} s")
    return PipelineResult(
        out=str(out),
        model_path=str(model_dir),
        index_path=str(index_path),
        report_path=str(out / "report.md"),
        plot_path=str(out / "report.png"),
        table_markdown=table_markdown,
        metrics=metrics,
    )
