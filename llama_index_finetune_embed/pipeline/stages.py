"""The main job's stages: what each reads, makes and writes under ``--out``.

Each stage has three functions, listed in the table of ``run.py``: ``inputs`` (every setting
that changes what it makes: its fingerprint in the ledger), ``make`` (does the work, writes its
files, returns what the ledger records) and ``load`` (reads the files of an earlier run back).
The index stage has a fourth, ``reads``: a fingerprint of the model it serves, known only once
the earlier stages are done. They read and fill one :class:`Job`; none of them consults the
ledger: ``run.py`` decides which to make and which to load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._io import atomic_write_json, atomic_write_text, file_hash
from llama_index_finetune_embed._version import __version__
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.pipeline.choices import Choices, make_llm
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.state import file_stamps, inputs_digest

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.generate import GenerationEstimate

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
    nodes: list[TextNode] = field(default_factory=list)
    train_nodes: list[TextNode] = field(default_factory=list)
    val_nodes: list[TextNode] = field(default_factory=list)
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


# -- 1. chunks: documents -> chunks (DIR/chunks.json), sampled down to max_chunks --------------


def chunks_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return {
        "documents": documents_inputs(list(config.docs)),
        **_pick(config, "chunk_size", "chunk_overlap", "max_chunks", "seed"),
        "package version": __version__,
    }


def documents_inputs(paths: list[str]) -> dict[str, Any]:
    """Every file the run reads (resolved path -> [size, mtime_ns]), or the stdlib corpus."""
    if not paths:
        return {"stdlib pydoc topics": platform.python_version()}
    from llama_index_finetune_embed.documents import find_documents

    files, skipped = find_documents(paths)
    out: dict[str, Any] = {}
    for f in files + skipped:
        stat = f.stat()
        out[str(f.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return out


def chunks_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "chunks.json",)


def make_chunks(job: Job) -> dict[str, Any]:
    nodes, info = read_chunks(job.config, parsed=job.out / "parsed")
    atomic_write_json(job.out / "chunks.json", [n.to_dict() for n in nodes], indent=None)
    job.nodes = nodes
    return info


def read_chunks(
    config: RunConfig, *, parsed: Path | None = None
) -> tuple[list[TextNode], dict[str, Any]]:
    """The run's chunks (documents loaded in parallel, chunked, sampled) and what the ledger
    records; ``parsed``: where each file's parse is kept (a rerun with other chunk settings
    does not parse again)."""
    from llama_index_finetune_embed.documents import (
        chunk_documents,
        find_documents,
        load_documents,
        sample_chunks,
        stdlib_documents,
    )

    skipped = find_documents(config.docs)[1] if config.docs else []
    docs = load_documents(config.docs, cache_dir=parsed) if config.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    if len(nodes) < 2:
        raise ValueError(f"only {len(nodes)} chunk(s) of text found; need at least 2 to split")
    return nodes, {"documents": len(docs), "chunks": len(nodes), "skipped_files": len(skipped)}


def load_chunks(job: Job, record: dict[str, Any]) -> None:
    from llama_index.core.schema import TextNode

    data = json.loads((job.out / "chunks.json").read_text(encoding="utf-8"))
    job.nodes = [TextNode.from_dict(d) for d in data]


# -- 2. split: chunks -> (train, val) by chunk (DIR/split.json) ---------------------------------


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
    job.train_nodes, job.val_nodes = split_nodes(job.nodes, ids)


def split_nodes(
    nodes: Sequence[TextNode], ids: dict[str, list[str]]
) -> tuple[list[TextNode], list[TextNode]]:
    """(training, held-out) nodes, in their order, by the ids of :func:`split_ids`."""
    val_ids = set(ids["val"])
    train = [n for n in nodes if n.node_id not in val_ids]
    return train, [n for n in nodes if n.node_id in val_ids]


# -- 3. generate: questions for train and val chunks (DIR/{train,val}_dataset.json) -------------


def generate_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    from llama_index_finetune_embed.generate import GenerationSettings

    return {
        "llm": choices.llm,
        # long chunks are asked passage by passage (questions from every part of a chunk)
        "passage_words": GenerationSettings().passage_words,
        **_pick(config, "questions_per_chunk", "offline_train", "seed", "max_val_chunks"),
        # the offline cap: it picks the chunks that API-LLM runs never sample
        **({} if choices.llm.startswith("openai:") else _pick(config, "max_train_chunks")),
    }


def asked_val_nodes(val_nodes: Sequence[TextNode], config: RunConfig) -> list[TextNode]:
    """The held-out chunks questions are written for: a seeded sample of ``max_val_chunks``
    (all when there are fewer). Retrieval is still scored against every held-out chunk."""
    from llama_index_finetune_embed.documents import sample_chunks

    return sample_chunks(val_nodes, config.max_val_chunks, seed=config.seed)


def generate_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "train_dataset.json", out / "val_dataset.json")


def make_datasets(job: Job) -> dict[str, Any]:
    """Questions for train and val chunks.

    With an API LLM both sides get LLM questions. Offline, training pairs are inverse-cloze
    pseudo-queries (plus filtered local-LLM questions with ``offline_train="mix"``) and held-out
    questions come from the local LLM alone, so the report measures retrieval of questions.
    Finished chunks are cached in ``DIR/cache/*.jsonl``: an interrupted run loses nothing.
    """
    config, choices = job.config, job.choices
    llm = make_llm(choices.llm)
    asked = asked_val_nodes(job.val_nodes, config)
    train_cache = _cache_for("train", job.train_nodes, job)
    val_cache = _cache_for("val", asked, job)
    train = training_pairs(job.train_nodes, choices.llm, llm, config, train_cache)
    if choices.llm.startswith("openai:"):
        val = _llm_questions(asked, llm, config, val_cache)
    else:
        from llama_index_finetune_embed.generate import offline_val_questions

        val = offline_val_questions(
            asked,
            llm=llm,
            questions_per_chunk=config.questions_per_chunk,
            cache_path=val_cache,
            seed=config.seed,
        )
    left = sum(int(ds.generation_stats.get("chunks_left", 0)) for ds in (train, val))
    if left:
        raise ValueError(
            f"question generation stopped at the budget with {left} chunks not asked yet; the "
            f"questions so far are kept in {job.out / 'cache'}: rerun (with a larger budget) to "
            "continue from there"
        )
    if len(asked) < len(job.val_nodes):  # every held-out chunk is ranked, asked or not
        corpus = {**embed_texts(job.val_nodes), **val.corpus}
        val = val.model_copy(update={"corpus": corpus})
    for name, ds in (("training", train), ("held-out", val)):
        if len(ds) == 0:
            raise ValueError(f"no usable {name} questions were generated; see the log above")
    train_path, val_path = generate_outputs(job.out)
    train.save_json(train_path)
    val.save_json(val_path)
    job.train, job.val = train, val
    return {"train_queries": len(train), "val_queries": len(val)}


def load_datasets(job: Job, record: dict[str, Any]) -> None:
    train_path, val_path = generate_outputs(job.out)
    job.train = EmbeddingQAFinetuneDataset.from_json(train_path)
    job.val = EmbeddingQAFinetuneDataset.from_json(val_path)


def embed_texts(nodes: Sequence[TextNode]) -> dict[str, str]:
    """node id -> the text the index embeds (what questions are written from)."""
    from llama_index.core.schema import MetadataMode

    return {n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}


def cache_path(side: str, texts: dict[str, str], out: Path, inputs: dict[str, Any]) -> Path:
    """``DIR/cache/<side>-<question settings>-<set of chunks>.jsonl``: one file per both."""
    return out / "cache" / f"{side}-{_asked_digest(inputs)}-{inputs_digest(texts)}.jsonl"


def _asked_digest(inputs: dict[str, Any]) -> str:
    """How questions are asked: the generate stage's inputs but the caps, which pick which chunks
    get questions, not how (a new cap reuses them)."""
    caps = ("max_train_chunks", "max_val_chunks")
    return inputs_digest({k: v for k, v in inputs.items() if k not in caps})


def _cache_for(side: str, nodes: Sequence[TextNode], job: Job) -> Path:
    """The generation cache of one side (:func:`cache_path`), started from earlier files of the
    same settings (a file holds chunks keyed by id and text hash), so edited documents or a new
    split ask the LLM again only for changed chunks."""
    from llama_index_finetune_embed.generate import carry_over

    texts, inputs = embed_texts(nodes), job.inputs["generate"]
    path = cache_path(side, texts, job.out, inputs)
    if not path.exists():
        # either side's: a chunk that moved between train and held out keeps its questions
        earlier = sorted(path.parent.glob(f"*-{_asked_digest(inputs)}-*.jsonl"),
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
    from llama_index_finetune_embed.generate import generate_offline_pairs

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


#: What a dry run says when questions are not asked of an API.
NO_API_CALLS = "no API calls: questions are made on this machine (no cost)"


def question_bill(
    nodes: Sequence[TextNode], choice: str, config: RunConfig, cache_path: Path
) -> GenerationEstimate | None:
    """What :func:`training_pairs`' API calls for ``nodes`` would cost (None: no API is asked)."""
    if not choice.startswith("openai:"):
        return None
    from llama_index_finetune_embed.generate import estimate_qa_generation

    return estimate_qa_generation(
        nodes, choice.split(":", 1)[1], num_questions_per_chunk=config.questions_per_chunk,
        cache_path=cache_path, max_rpm=config.max_rpm, max_tpm=config.max_tpm, seed=config.seed,
    )  # fmt: skip


def _llm_questions(
    nodes: Sequence[TextNode], llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    from llama_index_finetune_embed.generate import generate_qa_embedding_pairs

    return generate_qa_embedding_pairs(
        nodes,
        llm=llm,
        num_questions_per_chunk=config.questions_per_chunk,
        num_workers=config.num_workers,
        max_rpm=config.max_rpm,
        max_tpm=config.max_tpm,
        max_calls=config.max_calls,
        budget_tokens=config.budget_tokens,
        cache_path=cache_path,
        show_progress=True,
        seed=config.seed,
    )


# -- 4. finetune: the base model trained on the training pairs (DIR/model), resumable ----------


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


# -- 5. evaluate: base vs finetuned on the held-out questions (DIR/report.{md,png,json}) --------


def evaluate_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return {"base_model": choices.base_model, **_pick(config, "top_k", "seed")}


def evaluate_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "report.md", out / "report.json", out / "report.png")


def make_report(job: Job) -> dict[str, Any]:
    """Base vs finetuned on the held-out questions and the canary, and the row to serve.

    The first row, which every difference is measured against, is the base model exactly as
    LlamaIndex loads it (``HuggingFaceEmbedding(model_name=...)``: its configured length, long
    chunks truncated): what the user has before finetuning. The finetuned model is served as
    ``get_finetuned_model()`` serves it. Each model is also scored in ``build_window_index``
    (rows ``... + windows``): four rows in all, on the held-out questions and on the packaged
    canary of questions people wrote; :func:`~.serve.pick_served` picks the row the index stage
    serves (the best held-out row that really loses on neither).
    """
    from llama_index_finetune_embed.evaluate import compare_embed_models
    from llama_index_finetune_embed.finetune import load_canary
    from llama_index_finetune_embed.pipeline.report import render_run_report
    from llama_index_finetune_embed.pipeline.serve import pick_served

    out, (train, val) = job.out, job.datasets
    models = {BASE_ROW: job.choices.base_model, "finetuned": str(job.model_dir)}
    options = {"index": "both", "top_k": job.config.top_k, "seed": job.config.seed}
    table = compare_embed_models(
        val, models, show_progress=True, embed_on=job.config.embed_on, **options
    )
    canary = compare_embed_models(load_canary(), models, **options)  # 171 questions: here
    served = pick_served(table, canary)
    table.plot(out / "report.png")
    atomic_write_json(out / "report.json", {**table.to_dict(), "served": served,
                                            "canary": canary.to_dict()})  # fmt: skip
    report = render_run_report(
        table, train, val, job.choices, job.config, job.ledger, out, served=served
    )
    atomic_write_text(out / "report.md", report)
    job.table_markdown = table.to_markdown()
    job.metrics = {r.name: dict(r.metrics) for r in table.results}
    job.served = served
    return {"table_markdown": job.table_markdown, "metrics": job.metrics, "served": served}


def load_report(job: Job, record: dict[str, Any]) -> None:
    job.table_markdown, job.metrics = record["table_markdown"], record["metrics"]
    job.served = record.get("served") or {}


# -- 6. index: every chunk in build_window_index with the served model (DIR/index) ------------


def index_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    return {"index": "the row the report chose", "base_model": choices.base_model}


def index_reads(job: Job) -> dict[str, Any]:
    """The served model's content (:func:`model_files_digest`): a model replaced in ``DIR/model``
    (or a base model updated in place) rebuilds the index instead of serving old vectors."""
    which = _served(job)["model"]
    folder = _model_folder(str(job.model_dir) if which == "finetuned" else job.choices.base_model)
    return {"model": which, "model files": model_files_digest(folder) if folder else None}


def index_outputs(out: Path) -> tuple[Path, ...]:
    """The files every index has; the ledger also checks each file ``make_index`` wrote."""
    from llama_index_finetune_embed.serving import CONFIG_NAME

    return (out / "index" / CONFIG_NAME, out / "index" / "docstore.json")


def make_index(job: Job) -> dict[str, Any]:
    """Every chunk in the form the report chose (``job.served``): the finetuned model or the
    base, in windows or truncated (a plain index); ``load_window_index(DIR/index)`` loads
    either. Without a recorded choice: the finetuned model in windows.

    Records every file of the persisted index (``outputs``, :func:`~.state.file_stamps`): one
    deleted or damaged later rebuilds it."""
    from llama_index_finetune_embed.serving import build_window_index, ray_embedder

    served = _served(job)
    model = served_model(job, served["model"])
    nodes = job.nodes
    index = build_window_index(
        nodes, model, long_chunks=served["long_chunks"], show_progress=True,
        embed_with=ray_embedder(model, job.config.embed_on),
    )  # fmt: skip
    staging = job.out / ".index.part"
    shutil.rmtree(staging, ignore_errors=True)
    index.persist(staging)
    shutil.rmtree(job.index_dir, ignore_errors=True)
    staging.rename(job.index_dir)  # a killed run leaves the old index or none, never half of one
    written = sorted(p for p in job.index_dir.rglob("*") if p.is_file())
    return {"chunks": len(nodes), "vectors": len(index.index_struct.nodes_dict),
            "served": served["row"], "outputs": file_stamps(job.out, written)}  # fmt: skip


def _served(job: Job) -> dict[str, Any]:
    """The row the report chose (``job.served``); without one, the finetuned model in windows."""
    from llama_index_finetune_embed.pipeline.serve import served_form

    default = "finetuned + windows"
    return job.served or {"row": default, **served_form(default, BASE_ROW)}


def served_model(job: Job, which: str) -> Any:
    """The finetuned model as ``get_finetuned_model`` serves it, or the base as LlamaIndex
    loads it (the status quo)."""
    if which == "finetuned":
        from llama_index_finetune_embed.finetune import load_finetuned_model

        return load_finetuned_model(job.model_dir)
    from llama_index_finetune_embed.embeddings import load_embed_model

    return load_embed_model(job.choices.base_model)


def load_index(job: Job, record: dict[str, Any]) -> None:
    """Nothing to read back: the index is where ``job.index_dir`` says."""


#: The files of a model folder that make its vectors: weights, configs, tokenizer, prompts.
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


def model_files_digest(folder: Path) -> str:
    """A sha256 over the weight and config files of a sentence-transformers model folder (its
    own and those of the module folders ``modules.json`` lists; not checkpoints, not exports
    such as ``onnx/``): it changes when the model is replaced. About 0.2 s for a 90 MB model.

    Example:
        >>> model_files_digest(Path("runs/demo/model"))  # doctest: +SKIP
        '3f0c9a1e7b2d4c65'
    """
    digest = hashlib.sha256()
    for path in _model_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_hash(path)}\n".encode())
    return digest.hexdigest()[:16]


def _model_files(folder: Path) -> list[Path]:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        subdirs = [folder / m["path"] for m in modules if m.get("path")]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        subdirs = []  # a plain transformers folder: its own files only
    return sorted(
        path
        for d in (folder, *subdirs)
        if d.is_dir()
        for path in d.iterdir()
        if path.is_file()
        and path.suffix in _MODEL_FILE_SUFFIXES
        and not path.name.startswith(("checkpoints", "."))
    )


def _model_folder(model_id: str) -> Path | None:
    """Where a model's files are: its folder, or a hub id's snapshot in the local cache (None
    when it is in neither)."""
    from llama_index_finetune_embed.embeddings import resolve_model_id

    resolved = Path(resolve_model_id(model_id))
    if resolved.is_dir():
        return resolved
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model_id), local_files_only=True))
    except Exception:  # not cached, not a hub id: nothing to fingerprint but the id itself
        return None
