"""Stage 6, index: every chunk indexed with the model the report chose.

Reads ``job.nodes``, ``job.served`` and the served model (``DIR/model`` or the base); writes the
persisted ``build_window_index`` to ``DIR/index`` (built in ``DIR/.index.part`` and renamed, so a
killed run never leaves half an index) and records every file it wrote. Its ``reads`` is a digest
of the served model's files (:func:`model_files_digest`): a replaced model rebuilds the index.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from llama_index_finetune_embed._io import file_hash
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import (
    BASE_ROW,
    Job,
    logger,
    run_vectors,
    vector_line,
)
from llama_index_finetune_embed.pipeline.state import file_stamps


def index_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    inputs = {"index": "the row the report chose", "base_model": choices.base_model}
    if config.to_store:
        from llama_index_finetune_embed.serving import parse_store_url

        inputs["to_store"] = parse_store_url(config.to_store).redacted
    if config.current_model:
        inputs["current_model"] = config.current_model
    return inputs


def index_reads(job: Job) -> dict[str, Any]:
    """The served model's content (:func:`model_files_digest`): a model replaced in ``DIR/model``
    (or a base model updated in place) rebuilds the index instead of serving old vectors."""
    which = _served(job)["model"]
    spec = {"finetuned": str(job.model_dir), "current": job.config.current_model}.get(
        which, job.choices.base_model
    )
    folder = None if str(spec).startswith("openai:") else _model_folder(str(spec))
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
    from llama_index_finetune_embed.serving import ray_embedder

    served = _served(job)
    model = served_model(job, served["model"])
    # what the evaluate stage embedded with this model (the held-out chunks) is read back; the
    # JSON index adds the rest too (a redo embeds nothing), a store write only looks up (its
    # memory flat; a redo resumes from what the store holds)
    cache = run_vectors(job)
    embed_with = cache.embedder(model, ray_embedder(model, job.config.embed_on),
                                show_progress=True, keep=not job.config.to_store)  # fmt: skip
    if job.config.to_store:
        record = _write_to_store(job, served, model, embed_with)
    else:
        record = _write_json_index(job, served, model, embed_with)
    logger.info("index: %s", vector_line({"chunks": cache.counts()}))
    written = sorted(p for p in job.index_dir.rglob("*") if p.is_file())
    return {**record, "served": served["row"], "outputs": file_stamps(job.out, written),
            "embedded": cache.counts()}  # fmt: skip


def _write_json_index(
    job: Job, served: dict[str, Any], model: Any, embed_with: Any
) -> dict[str, Any]:
    """The persisted ``build_window_index`` in ``DIR/index`` (built in ``DIR/.index.part`` and
    renamed, so a killed run never leaves half an index)."""
    from llama_index_finetune_embed.serving import build_window_index

    index = build_window_index(
        job.nodes, model, long_chunks=served["long_chunks"], show_progress=True,
        embed_with=embed_with,
    )  # fmt: skip
    staging = job.out / ".index.part"
    shutil.rmtree(staging, ignore_errors=True)
    index.persist(staging)
    shutil.rmtree(job.index_dir, ignore_errors=True)
    staging.rename(job.index_dir)  # a killed run leaves the old index or none, never half of one
    return {"chunks": len(job.nodes), "vectors": len(index.index_struct.nodes_dict)}


def _write_to_store(
    job: Job, served: dict[str, Any], model: Any, embed_with: Any
) -> dict[str, Any]:
    """The index into ``--to-store`` (batched; an interrupted write resumes where it stopped),
    recorded in ``DIR/index``: an earlier record of another store (or a JSON index) is removed
    first, never the store it names."""
    from llama_index_finetune_embed.serving import (
        parse_store_url,
        recorded_store,
        write_window_index,
    )

    url = parse_store_url(job.config.to_store or "")
    if job.index_dir.exists() and recorded_store(job.index_dir) != url.redacted:
        shutil.rmtree(job.index_dir)
    stats = write_window_index(
        job.nodes, model, url, job.index_dir, long_chunks=served["long_chunks"],
        total=len(job.nodes), show_progress=True, embed_with=embed_with,
    )  # fmt: skip
    return {"chunks": stats.chunks, "vectors": stats.entries, "written": stats.written,
            "store": stats.url}  # fmt: skip


def _served(job: Job) -> dict[str, Any]:
    """The row the report chose (``job.served``); without one, the finetuned model in windows."""
    from llama_index_finetune_embed.pipeline.serve import served_form

    default = "finetuned + windows"
    return job.served or {"row": default, **served_form(default, BASE_ROW)}


def served_model(job: Job, which: str) -> Any:
    """The finetuned model as ``get_finetuned_model`` serves it, the model the user's index
    uses today (nothing beat it), or the base as LlamaIndex loads it (the status quo)."""
    if which == "finetuned":
        from llama_index_finetune_embed.finetune import load_finetuned_model

        return load_finetuned_model(job.model_dir)
    if which == "current" and job.config.current_model:
        from llama_index_finetune_embed.embeddings import load_any_embed_model

        return load_any_embed_model(job.config.current_model)
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
