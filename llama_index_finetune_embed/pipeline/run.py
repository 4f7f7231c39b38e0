"""The main job: documents in, finetuned model + held-out report + index out, each stage resumable.

One loop over :data:`STAGE_TABLE` (name, input fingerprint, outputs, make, load): the ledger
(``DIR/stages.json``, :class:`~llama_index_finetune_embed.pipeline.state.RunState`) is consulted
here only, once per stage: reuse what an earlier run made from the same inputs, else make it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import BaseModel

from llama_index_finetune_embed._io import writable_dir
from llama_index_finetune_embed.embeddings import check_max_seq_length
from llama_index_finetune_embed.pipeline import stages as st
from llama_index_finetune_embed.pipeline.choices import Choices, resolve_choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.state import RunState, run_lock

logger = logging.getLogger("llama_index_finetune_embed.pipeline")


@dataclass(frozen=True)
class Stage:
    """One row of the table: what a stage is made from, what it leaves, how to make or reload it."""

    name: str
    inputs: Callable[[RunConfig, Choices], dict[str, Any]]  # its fingerprint in the ledger
    outputs: Callable[[Path], tuple[Path, ...]]  # must all exist for a reuse
    make: Callable[[st.Job], dict[str, Any]]  # does the work; returns what the ledger records
    load: Callable[[st.Job, dict[str, Any]], None]  # reads an earlier run's outputs back
    announce: Callable[[st.Job], str] | None = None  # the line printed after it
    # fingerprints of earlier stages' files it reads, taken once those are done (the model)
    reads: Callable[[st.Job], dict[str, Any]] | None = None


#: The stages of a run, in order: redoing one redoes every later one.
STAGE_TABLE = (
    Stage("chunks", st.chunks_inputs, st.chunks_outputs, st.make_chunks, st.load_chunks),
    Stage("split", st.split_inputs, st.split_outputs, st.make_split, st.load_split,
          lambda job: f"chunks: {len(job.nodes)} ({len(job.train_nodes)} train / "
                      f"{len(job.val_nodes)} held out)"),
    Stage("generate", st.generate_inputs, st.generate_outputs, st.make_datasets, st.load_datasets,
          lambda job: f"pairs: {len(job.datasets[0])} for training, "
                      f"{len(job.datasets[1])} held-out questions"),
    Stage("finetune", st.finetune_inputs, st.finetune_outputs, st.make_model, st.load_model,
          lambda job: f"model: {job.model_dir}"),
    Stage("evaluate", st.evaluate_inputs, st.evaluate_outputs, st.make_report, st.load_report,
          lambda job: f"serving: {job.served.get('row', '?')} (report.md says why)"),
    Stage("index", st.index_inputs, st.index_outputs, st.make_index, st.load_index,
          lambda job: f"index: {job.index_dir} (load_window_index)", reads=st.index_reads),
)  # fmt: skip

STAGES = tuple(stage.name for stage in STAGE_TABLE)


def stage_inputs(config: RunConfig, choices: Choices) -> dict[str, dict[str, Any]]:
    """Per stage, in run order, every input that changes what it makes."""
    return {stage.name: stage.inputs(config, choices) for stage in STAGE_TABLE}


class PipelineResult(BaseModel):
    """Where a run left its outputs, and the comparison table as markdown."""

    out: str
    model_path: str
    index_path: str
    report_path: str
    plot_path: str
    table_markdown: str
    metrics: dict[str, dict[str, float]]
    served: dict[str, Any] = {}


def _reusable(
    ledger: RunState, stage: Stage, job: st.Job, announce: Callable[[str], None]
) -> bool:
    """Whether the ledger lets ``stage`` be reused: inputs, reads and outputs as recorded. A
    planned reuse that turns into a redo (a file changed or missing) is announced, with why."""
    planned = stage.name in ledger.done
    if stage.reads is not None:
        ledger.read_from(stage.name, stage.reads(job))
    if ledger.finished(stage.name, *stage.outputs(job.out)):
        return True
    if planned:
        announce(f"{stage.name}: {ledger.reasons[stage.name]}")
    return False


def dry_run(config: RunConfig) -> list[str]:
    """What ``run`` would ask the API for and what it would cost: chunks, calls, tokens, time,
    cost per side, chunks already cached left out. Sends nothing and writes nothing.

    Example:
        >>> print("\n".join(dry_run(RunConfig(out="runs/x", llm="openai:gpt-4o-mini"))))
        ... # doctest: +SKIP
    """
    choices = resolve_choices(config)
    nodes, _ = st.read_chunks(config)
    train, val = st.split_nodes(nodes, st.split_ids(nodes, config))
    lines = [
        f"question source: {choices.llm} ({choices.llm_reason})",
        f"chunks: {len(nodes)} ({len(train)} train / {len(val)} held out)",
    ]
    inputs, costs = st.generate_inputs(config, choices), []
    asked = st.asked_val_nodes(val, config)
    if len(asked) < len(val):
        lines.append(f"held-out questions for {len(asked)} of the {len(val)} held-out chunks "
                     "(max_val_chunks); every held-out chunk is ranked")  # fmt: skip
    current = st.current_model_bill(config, val, asked)
    for side, side_nodes in (("train", train), ("val", asked)):
        path = st.cache_path(side, st.embed_texts(side_nodes), Path(config.out), inputs)
        estimate = st.question_bill(side_nodes, choices.llm, config, path)
        if estimate is None:
            return [*lines, st.NO_API_CALLS, *current[0]]
        lines += [f"{side} questions:", *(f"  {line}" for line in estimate.lines())]
        costs.append(estimate.cost_usd)
    lines += current[0]
    costs.append(current[1])
    if None not in costs:
        lines.append(f"total cost: ${sum(costs):,.2f}")
    return lines


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
        ledger = RunState(out, stage_inputs(config, choices), restart=restart)
        if not ledger.fresh or restart:
            for line in ledger.plan_lines():
                announce(line)
        started = time.perf_counter()
        job = st.Job(config, choices, out, ledger.inputs, ledger=ledger.done)
        for stage in STAGE_TABLE:
            if _reusable(ledger, stage, job, announce):
                stage.load(job, ledger.done[stage.name])
            else:
                ledger.mark(stage.name, **stage.make(job))
            if stage.announce is not None:
                announce(stage.announce(job))
        announce(f"finished in {time.perf_counter() - started:.0f} s")
    return PipelineResult(
        out=str(out),
        model_path=str(job.model_dir),
        index_path=str(job.index_dir),
        report_path=str(out / "report.md"),
        plot_path=str(out / "report.png"),
        table_markdown=job.table_markdown,
        metrics=job.metrics,
        served=job.served,
    )
