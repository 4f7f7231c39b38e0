"""What a finetuned model reports: the summary in ``metrics.json`` and its model-card section.

Plain data in, plain data out (no torch): the engine hands over what it trained with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune.recipe import FinetuneRecipe


def recipe_record(
    trainer: Any,
    recipe: FinetuneRecipe,
    *,
    max_seq_length: int,
    prompts: tuple[str, str],
    grouped: bool,
) -> dict[str, Any]:
    """The "Recipe" of metrics.json: what the trainer ran with, then the recipe's options."""
    args = trainer.args
    return {
        "loss": type(trainer.loss).__name__ if not isinstance(trainer.loss, dict) else "multi",
        "batch_size": args.per_device_train_batch_size * max(1, args.world_size),
        "epochs": args.num_train_epochs,
        "learning_rate": args.learning_rate,
        "max_seq_length": max_seq_length,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        "batch_sampler": ("chunk-grouped" if grouped else "chunk-aware no-duplicates")
        + (", topic clusters" if recipe.topic_batches else ""),
        **{
            k: v for k, v in recipe.recorded().items()
            if k not in {"learning_rate", "precision"}
        },
        "query_prompt": prompts[0],
        "document_prompt": prompts[1],
        "base_weight": recipe.base_weight,
    }


def training_summary(
    trainer: Any,
    record: dict[str, Any],
    *,
    base_model: str,
    train: EmbeddingQAFinetuneDataset,
    val: EmbeddingQAFinetuneDataset | None,
    train_rows: int,
    final: dict[str, float],
    seconds: float,
    steps_run: int,
    resumed_from: str | None,
) -> dict[str, Any]:
    """What ``metrics.json`` and the model card report: data, recipe, time and final metrics."""
    state = trainer.state
    return {
        "base_model": base_model,
        "train_queries": len(train.queries),
        "train_chunks": len(train.corpus),
        "train_rows": train_rows,
        "val_queries": len(val.queries) if val else 0,
        "metadata_mode": train.metadata_mode or "unknown",
        "train_seconds": round(seconds, 2),
        "global_steps": state.global_step,
        "steps_run": steps_run,
        "resumed_from": resumed_from,
        "best_checkpoint": state.best_model_checkpoint,
        "recipe": record,
        "metrics": {k: float(v) for k, v in final.items()},
    }


@contextmanager
def training_text_kept_out(card_data: Any, enabled: bool = True) -> Iterator[None]:
    """Build the trainer inside: no training text reaches ``card_data`` (when ``enabled``).

    The trainer skips its "Computing widget examples" pass when the card already has a widget,
    so a placeholder stands in while it is built; then :func:`drop_training_text` removes the
    placeholder and the texts the trainer copied anyway (sample rows).
    """
    if enabled and not card_data.widget:
        card_data.widget = [{"source_sentence": "", "sentences": []}]  # removed below
    try:
        yield
    finally:
        if enabled:
            drop_training_text(card_data)


def drop_training_text(card_data: Any) -> None:
    """Remove every text sentence-transformers copied from the training data into
    ``model.model_card_data`` (its ``SentenceTransformerModelCardData``), in place.

    The trainer copies them when it is built: widget examples ("Computing widget examples"),
    the usage snippet's sentences, and three sample rows per dataset. Without them the card
    shows the library's generic usage sentences and keeps the dataset sizes and token
    statistics (numbers only).
    """
    card_data.widget = []
    card_data.usage_examples = None  # the library falls back to its generic sentences
    card_data.usage_examples_display = None
    for datasets in (card_data.train_datasets, card_data.eval_datasets):
        for info in datasets or ():
            for key in ("examples", "examples_table", "_example_columns"):
                info.pop(key, None)


def card_section(summary: dict[str, Any]) -> str:
    """Markdown section appended to the model card: base model, data, recipe and metrics."""
    recipe = summary["recipe"]
    lines = [
        "",
        "## Finetuned with llama-index-finetune-embed",
        "",
        f"- Base model: `{summary['base_model']}`",
        f"- Training data: {summary['train_queries']} queries over {summary['train_chunks']} "
        f"chunks ({summary['train_rows']} training pairs; corpus text rendered with "
        f"metadata mode `{summary['metadata_mode']}`)",
        f"- Validation data: {summary['val_queries']} queries" if summary["val_queries"] else
        "- Validation data: none",
        f"- Training time: {summary['train_seconds']:.1f} s",
        f"- Query prompt: `{recipe['query_prompt']!r}`, document prompt: "
        f"`{recipe['document_prompt']!r}` (saved in `config_sentence_transformers.json`)",
        "",
        "Recipe:",
        "",
    ]
    lines += [f"- {key}: `{value}`" for key, value in recipe.items() if "prompt" not in key]
    metrics = summary.get("metrics") or {}
    if metrics:
        lines += ["", "Validation metrics (final model):", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items())]
    if summary.get("guard"):
        lines += ["", "Guard (NDCG@10 x100 against the base as LlamaIndex loads it):", ""]
        lines += [summary["guard"]["message"]]
    return "\n".join(lines) + "\n"


__all__ = [
    "card_section",
    "drop_training_text",
    "recipe_record",
    "training_summary",
    "training_text_kept_out",
]
