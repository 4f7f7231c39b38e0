"""The trainer: training arguments, evaluator and ``SentenceTransformerTrainer``, from values.

Each builder takes the values it needs and returns what it makes; the user's training arguments
are copied before the recipe fills in what they left at the defaults.

Imported lazily by the engine (sentence-transformers and transformers load here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed.finetune.model import precision_flags
from llama_index_finetune_embed.finetune.sampler import Row

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from torch import nn

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune.recipe import FinetuneRecipe

VAL_NAME = "val"
LOG_SHARE = 0.1  # the training loss is logged every tenth of the steps
BEST_METRIC = f"eval_{VAL_NAME}_cosine_mrr@10"


def build_train_dataset(
    dataset: EmbeddingQAFinetuneDataset,
    rows: Sequence[Row],
) -> Dataset:
    """HF ``Dataset`` with columns anchor, positive[, negative_1, ...] in row order."""
    from datasets import Dataset

    columns: dict[str, list[str]] = {
        "anchor": [dataset.queries[qid] for qid, _, _ in rows],
        "positive": [dataset.corpus[doc_id] for _, doc_id, _ in rows],
    }
    for i in range(len(rows[0][2]) if rows else 0):
        columns[f"negative_{i + 1}"] = [dataset.corpus[negs[i]] for _, _, negs in rows]
    return Dataset.from_dict(columns)


def build_evaluator(
    val: EmbeddingQAFinetuneDataset,
    *,
    batch_size: int,
    prompts: tuple[str, str],
    show_progress: bool,
    name: str = VAL_NAME,
) -> InformationRetrievalEvaluator:
    """InformationRetrievalEvaluator over ``val``, with the training prompts."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    return InformationRetrievalEvaluator(
        queries=val.queries,
        corpus=val.corpus,
        relevant_docs={qid: set(docs) for qid, docs in val.relevant_docs.items()},
        name=name,
        batch_size=max(batch_size, 32),
        query_prompt=prompts[0] or None,
        corpus_prompt=prompts[1] or None,
        show_progress_bar=show_progress,
        write_csv=False,
    )


def column_prompts(prompts: tuple[str, str], hard_negatives: int) -> dict[str, str] | None:
    """Prompt per dataset column (anchor, positive, negative_i), as the saved model will use."""
    columns = {"anchor": prompts[0], "positive": prompts[1]}
    for i in range(hard_negatives):
        columns[f"negative_{i + 1}"] = prompts[1]
    return {k: v for k, v in columns.items() if v} or None


def build_args(
    recipe: FinetuneRecipe,
    *,
    sampler: Callable[..., Any],
    prompts: dict[str, str] | None,
    output_dir: Path,
    epochs: int,
    batch_size: int,
    device: str,
    evaluate: bool,
    show_progress: bool,
) -> SentenceTransformerTrainingArguments:
    """Training arguments of the recipe (use :func:`fill_args` for the user's own)."""
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    steps = recipe.checkpoint_steps
    strategy = "steps" if steps else ("epoch" if evaluate else "no")
    extra: dict[str, Any] = {}
    if evaluate:
        extra = {"eval_strategy": strategy, "load_best_model_at_end": True,
                 "metric_for_best_model": BEST_METRIC, "greater_is_better": True}
        if steps:
            extra["eval_steps"] = steps
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_ratio,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        batch_sampler=sampler,
        prompts=prompts,
        save_strategy=strategy,
        save_steps=steps or 500,
        save_total_limit=2,
        # the loss at the first step, then every tenth of the run (a float < 1 is a share of
        # the steps), or with checkpoints at least every 50 steps; shown under the step bar
        logging_steps=min(50, steps) if steps else LOG_SHARE,
        logging_first_step=True,
        report_to=[],
        disable_tqdm=not show_progress,  # the trainer's own bar: steps, rate and ETA
        use_cpu=device == "cpu",
        dataloader_drop_last=False,
        **precision_flags(recipe.precision, device),
        **extra,
    )


def fill_args(
    args: SentenceTransformerTrainingArguments,
    *,
    make_sampler: Callable[[], Callable[..., Any]],
    prompts: dict[str, str] | None,
) -> SentenceTransformerTrainingArguments:
    """A copy of the user's arguments (they win; theirs stay untouched) with the recipe's
    sampler and prompts where they left the defaults, so that training uses the prompts the
    saved model will carry. ``make_sampler`` runs only when the recipe's sampler is used."""
    filled = copy.deepcopy(args)
    if filled.batch_sampler == "batch_sampler":
        filled.batch_sampler = make_sampler()
    if filled.prompts is None:
        filled.prompts = prompts
    return filled


def assemble_trainer(
    model: SentenceTransformer,
    args: SentenceTransformerTrainingArguments,
    *,
    train: EmbeddingQAFinetuneDataset,
    rows: Sequence[Row],
    loss: nn.Module,
    evaluator: InformationRetrievalEvaluator | None,
    quiet: bool = False,
) -> SentenceTransformerTrainer:
    """``SentenceTransformerTrainer`` over ``rows``, counting the steps it runs.

    With ``quiet``, the trainer prints nothing: without its progress bar (``disable_tqdm``) it
    would ``print`` each logged loss instead; the losses stay in ``trainer.state.log_history``.
    """
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from transformers.trainer_callback import PrinterCallback

    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=build_train_dataset(train, rows),
        loss=loss,
        evaluator=evaluator,
        callbacks=[StepCounter()],
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
    return trainer


def _step_counter_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class StepCounter(_step_counter_base()):  # type: ignore[misc]
    """Counts the optimizer steps this process ran (a resumed run skips the ones already done)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


def steps_run(trainer: Any) -> int:
    """Optimizer steps run by this ``trainer.train()`` call."""
    counters = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StepCounter)]
    return counters[0].steps if counters else -1


__all__ = [
    "StepCounter",
    "assemble_trainer",
    "build_args",
    "build_evaluator",
    "build_train_dataset",
    "column_prompts",
    "fill_args",
    "steps_run",
]
