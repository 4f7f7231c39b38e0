"""The main job's stages: what each reads, makes and writes under ``--out``, one module a stage.

Each stage has three functions, listed in the table of ``run.py``: ``inputs`` (every setting
that changes what it makes: its fingerprint in the ledger), ``make`` (does the work, writes its
files, returns what the ledger records) and ``load`` (reads the files of an earlier run back).
The index stage has a fourth, ``reads``: a fingerprint of the model it serves, known only once
the earlier stages are done. They read and fill one :class:`Job`; none of them consults the
ledger: ``run.py`` decides which to make and which to load.

Modules: ``job`` (:class:`Job`, the report's first row :data:`BASE_ROW`, what several stages
share), then one per stage in run order: ``chunks`` (documents, or an existing index's chunks
read from its persist dir or vector store -> ``chunks.json``), ``split``
(train and held-out chunk ids -> ``split.json``), ``generate`` (questions ->
``{train,val}_dataset.json``; the question cache, a dry run's bill), ``finetune`` (``model/``,
resumable), ``evaluate`` (``report.{md,json,png}`` and the row to serve; ``current``: the
first row, the model the user's index uses today) and ``index`` (``index/`` with the served
model, or ``--to-store``'s table written in batches; the model-files digest). Stage modules
import one another one way only (``current`` reads ``chunks``' source check).
"""

from llama_index_finetune_embed.pipeline.stages.chunks import (
    chunks_inputs,
    chunks_outputs,
    documents_inputs,
    load_chunks,
    make_chunks,
    read_chunks,
)
from llama_index_finetune_embed.pipeline.stages.current import current_model_bill, current_row
from llama_index_finetune_embed.pipeline.stages.evaluate import (
    evaluate_inputs,
    evaluate_outputs,
    load_report,
    make_report,
)
from llama_index_finetune_embed.pipeline.stages.finetune import (
    finetune_inputs,
    finetune_outputs,
    load_model,
    make_model,
)
from llama_index_finetune_embed.pipeline.stages.generate import (
    NO_API_CALLS,
    _cache_for,
    asked_val_nodes,
    cache_path,
    embed_texts,
    generate_inputs,
    generate_outputs,
    load_datasets,
    make_datasets,
    question_bill,
    training_pairs,
)
from llama_index_finetune_embed.pipeline.stages.index import (
    index_inputs,
    index_outputs,
    index_reads,
    load_index,
    make_index,
    model_files_digest,
    served_model,
)
from llama_index_finetune_embed.pipeline.stages.job import BASE_ROW, Job
from llama_index_finetune_embed.pipeline.stages.split import (
    load_split,
    make_split,
    split_ids,
    split_inputs,
    split_nodes,
    split_outputs,
)

__all__ = [
    "BASE_ROW",
    "NO_API_CALLS",
    "Job",
    "_cache_for",
    "asked_val_nodes",
    "cache_path",
    "chunks_inputs",
    "chunks_outputs",
    "current_model_bill",
    "current_row",
    "documents_inputs",
    "embed_texts",
    "evaluate_inputs",
    "evaluate_outputs",
    "finetune_inputs",
    "finetune_outputs",
    "generate_inputs",
    "generate_outputs",
    "index_inputs",
    "index_outputs",
    "index_reads",
    "load_chunks",
    "load_datasets",
    "load_index",
    "load_model",
    "load_report",
    "load_split",
    "make_chunks",
    "make_datasets",
    "make_index",
    "make_model",
    "make_report",
    "make_split",
    "model_files_digest",
    "question_bill",
    "read_chunks",
    "served_model",
    "split_ids",
    "split_inputs",
    "split_nodes",
    "split_outputs",
    "training_pairs",
]
