"""The main job (``finetune-embed run``): documents in, finetuned model, report and index out.

Modules: ``config`` (:class:`RunConfig`), ``choices`` (which LLM and base model, and why),
``state`` (the stage ledger ``DIR/stages.json`` and the run lock), ``stages`` (what each stage
reads, makes and writes), ``run`` (one loop over the table of stages), ``report`` (the run's
``report.md``).
"""

from llama_index_finetune_embed.pipeline.choices import Choices, make_llm, resolve_choices
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.run import (
    STAGES,
    PipelineResult,
    dry_run,
    run_pipeline,
    stage_inputs,
)
from llama_index_finetune_embed.pipeline.stages import NO_API_CALLS, question_bill, training_pairs

__all__ = [
    "NO_API_CALLS",
    "STAGES",
    "Choices",
    "dry_run",
    "PipelineResult",
    "RunConfig",
    "make_llm",
    "question_bill",
    "resolve_choices",
    "run_pipeline",
    "stage_inputs",
    "training_pairs",
]
