"""Stage 5, evaluate: base vs finetuned on the held-out questions and the canary.

Reads ``job.datasets`` and the model in ``DIR/model``; scores the four rows (each model truncated
and in windows) against the base as LlamaIndex loads it, picks the row to serve, writes
``DIR/report.md``, ``DIR/report.json`` and ``DIR/report.png`` and fills ``job.table_markdown``,
``job.metrics`` and ``job.served`` (a rerun that reuses the stage reads them from the ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index_finetune_embed._io import atomic_write_json, atomic_write_text
from llama_index_finetune_embed.pipeline.choices import Choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.current import current_results
from llama_index_finetune_embed.pipeline.stages.job import (
    BASE_ROW,
    Job,
    _pick,
    logger,
    run_vectors,
    vector_line,
)


def evaluate_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    inputs = {"base_model": choices.base_model, **_pick(config, "top_k", "seed")}
    if config.current_model:  # its row may read the source's vectors
        inputs.update(_pick(config, "current_model", "from_index", "from_store"))
    if config.to_store:  # the report's last lines load it
        inputs["to_store"] = config.to_store
    return inputs


def evaluate_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "report.md", out / "report.json", out / "report.png")


def make_report(job: Job) -> dict[str, Any]:
    """Base vs finetuned on the held-out questions and the canary, and the row to serve.

    The first row, which every difference is measured against, is the model the user's index
    uses today (``--current-model``, :mod:`.current`), else the base model exactly as LlamaIndex
    loads it (``HuggingFaceEmbedding(model_name=...)``: its configured length, long chunks
    truncated): what the user has before finetuning. The finetuned model is served as
    ``get_finetuned_model()`` serves it. Each model is also scored in ``build_window_index``
    (rows ``... + windows``): four rows in all, on the held-out questions and on the packaged
    canary of questions people wrote; :func:`~.serve.pick_served` picks the row the index stage
    serves (the best held-out row that really loses on neither).
    """
    from llama_index_finetune_embed.evaluate import ComparisonTable, compare_embed_models
    from llama_index_finetune_embed.finetune import load_canary
    from llama_index_finetune_embed.pipeline.report import render_run_report
    from llama_index_finetune_embed.pipeline.serve import pick_served

    out, (train, val) = job.out, job.datasets
    models = {BASE_ROW: job.choices.base_model, "finetuned": str(job.model_dir)}
    options = {"index": "both", "top_k": job.config.top_k, "seed": job.config.seed}
    from llama_index_finetune_embed.vectors import VectorCache, user_cache_dir

    held_out = run_vectors(job)  # read again by the index stage
    shared = VectorCache(user_cache_dir(), max_models=8)  # the canary's, kept across runs
    table = compare_embed_models(
        val, models, show_progress=True, embed_on=job.config.embed_on, vector_cache=held_out,
        **options,
    )  # fmt: skip
    # 171 questions people wrote: here; their vectors are kept across runs (the base's reused)
    canary = compare_embed_models(load_canary(), models, vector_cache=shared, **options)
    current_how = None
    if job.config.current_model:  # what the user's index uses today goes first
        first, first_canary, current_how = current_results(
            job, val, load_canary(), caches=(held_out, shared)
        )
        table = ComparisonTable.from_results([first, *table.results])
        canary = ComparisonTable.from_results([first_canary, *canary.results])
    served = pick_served(table, canary, base_row=BASE_ROW)
    served["current_how"] = current_how
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
    vectors = {"held out": held_out.counts(), "canary": shared.counts()}
    logger.info("evaluate: %s", vector_line(vectors))
    return {"table_markdown": job.table_markdown, "metrics": job.metrics, "served": served,
            "vectors": vectors}  # fmt: skip



def load_report(job: Job, record: dict[str, Any]) -> None:
    job.table_markdown, job.metrics = record["table_markdown"], record["metrics"]
    job.served = record.get("served") or {}
