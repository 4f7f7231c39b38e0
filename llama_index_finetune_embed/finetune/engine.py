"""SentenceTransformersFinetuneEngine: dataset -> trainer -> saved model, card -> embed model."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._compat import pick_dataset, resolve_device
from llama_index_finetune_embed._io import (
    atomic_write_json,
    atomic_write_text,
    progress_enabled,
    writable_dir,
)
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.finetune.recipe import (
    FinetuneRecipe,
    check_positive_int,
    resolve_recipe,
)

if TYPE_CHECKING:
    import torch
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from torch import nn

    from llama_index_finetune_embed.finetune.guard import RetrievalGuard

logger = logging.getLogger(__name__)


class SentenceTransformersFinetuneEngine:
    """Finetune a sentence-transformers model on (query, chunk) pairs; get a LlamaIndex embedding.

    Drop-in for llama-index-finetuning's engine of the same name, trained with
    ``SentenceTransformerTrainer``. The default recipe (:class:`FinetuneRecipe`):
    MultipleNegativesRankingLoss in both directions over batches of ``batch_size`` chunks, each
    with all its questions and encoded once (``group_by_chunk``), drawn from one topic cluster
    of the base model's question embeddings (``topic_batches``: in-batch negatives about the
    same thing, not random ones); no two chunks of a batch overlap or share a text, so they are
    never false negatives of each other; 2 epochs with warmup, the longest input the model
    takes (<= 512 tokens), bf16 autocast where the hardware has it, and dropout off (on a CPU
    it makes training about 4x slower for no measured gain). Then the trained weights are
    averaged with the base's (``base_weight`` 0.5, WiSE-FT), so that questions unlike the
    training ones do not pay for the gain, and the guard checks the result against the base on
    questions people wrote (``guard``). Runs unchanged under ``torchrun`` (DDP); rank 0 saves.

    Args (llama-index-finetuning 0.4.2's, in its positional order):
        dataset: the training pairs (``train_dataset=`` is the same, keyword-only).
        model_id: hub id, local directory, or ``"local:all-MiniLM-L6-v2"`` (the packaged model).
        model_output_path: where the finetuned model, its card and ``metrics.json`` go; kept
            as given (a ``str`` stays a ``str``); :attr:`output_dir` is it as a ``Path``.
        batch_size: chunks per batch (each chunk is a negative for every other chunk's
            questions); with ``group_by_chunk=False``, (question, chunk) rows per batch. More
            than the data allows (chunks sharing a text or overlapping are kept apart) shrinks
            to what it allows, with a warning; fewer than 2 chunks is an error.
        val_dataset: optional; evaluated during training (MRR@10), the best checkpoint is kept.
        loss: ``None`` (the recipe), a sentence-transformers loss built on :attr:`model`, or a
            callable ``model -> loss``.
        epochs: passes over the training pairs.
        show_progress_bar: the reference's name for ``show_progress``.
        evaluation_steps: with a val set, evaluate (and checkpoint) every N steps
            (``checkpoint_steps``); default: once per epoch. Without one it warns.
        use_all_docs: ``True`` is what this engine always does (every relevant chunk of a
            query is a pair); ``False`` is accepted and warns.
        trust_remote_code: let the model run code from its repository (off by default).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``; ``None`` picks the GPU if any.
        save_checkpoints: keep checkpoints every ``checkpoint_save_steps`` (default 500) in
            ``model_output_path/checkpoints`` (the reference: ``checkpoints/<output path>``).
        resume_from_checkpoint: continue from the last checkpoint there (a recipe field).
        checkpoint_save_steps: see ``save_checkpoints`` (alone, it warns, as it does nothing).
        checkpoint_save_total_limit: accepted and warns: at most 2 checkpoints are kept.

    Keyword-only (ours):
        recipe: the training options (:class:`FinetuneRecipe`; default: its defaults).
        show_progress: show progress bars; ``None`` follows the logger (INFO shows them).
        args: ``SentenceTransformerTrainingArguments``; when given, they override everything
            in the recipe that they cover (``output_dir`` included). They are copied, never
            changed.
        guard_checks: more held-out sets for the guard, by name (e.g. questions about chunks
            kept out of training), checked without being used during training.
        **options: any field of :class:`FinetuneRecipe` (``learning_rate``, ``base_weight``,
            ``matryoshka_dims``, ...), overriding ``recipe``'s; documented there.

    Example:
        >>> engine = SentenceTransformersFinetuneEngine(
        ...     train_dataset, model_id="local:all-MiniLM-L6-v2", model_output_path="exp_finetune"
        ... )  # doctest: +SKIP
        >>> engine.finetune()  # doctest: +SKIP
        >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
        >>> index = VectorStoreIndex(nodes, embed_model=embed_model)  # doctest: +SKIP

        The same recipe for several runs, one option changed per run:

        >>> recipe = FinetuneRecipe(learning_rate=2e-5, base_weight=0.0)
        >>> for seed in (0, 1):  # doctest: +SKIP
        ...     SentenceTransformersFinetuneEngine(
        ...         train_dataset, model_output_path=f"exp_{seed}", recipe=recipe, seed=seed
        ...     ).finetune()
    """

    def __init__(
        self,
        dataset: EmbeddingQAFinetuneDataset | None = None,
        model_id: str = "BAAI/bge-small-en-v1.5",
        model_output_path: str | os.PathLike[str] = "exp_finetune",
        batch_size: int = 16,
        val_dataset: EmbeddingQAFinetuneDataset | None = None,
        loss: nn.Module | Callable[[SentenceTransformer], nn.Module] | None = None,
        epochs: int = 2,
        show_progress_bar: bool | None = None,
        evaluation_steps: int | None = None,
        use_all_docs: bool | None = None,
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
        save_checkpoints: bool = False,
        resume_from_checkpoint: bool | None = None,
        checkpoint_save_steps: int | None = None,
        checkpoint_save_total_limit: int | None = None,
        *,
        train_dataset: EmbeddingQAFinetuneDataset | None = None,
        recipe: FinetuneRecipe | None = None,
        show_progress: bool | None = None,
        args: SentenceTransformerTrainingArguments | None = None,
        guard_checks: Mapping[str, EmbeddingQAFinetuneDataset] | None = None,
        **options: Any,
    ) -> None:
        from llama_index_finetune_embed.finetune import reference_args as ref

        train = pick_dataset(dataset, train_dataset)
        self.train_dataset = EmbeddingQAFinetuneDataset.coerce(train, "train_dataset")
        self.val_dataset = (
            None if val_dataset is None
            else EmbeddingQAFinetuneDataset.coerce(val_dataset, "val_dataset")
        )
        check_positive_int("batch_size", batch_size)
        check_positive_int("epochs", epochs)
        options = ref.checkpoint_options(
            options, has_val=self.val_dataset is not None, evaluation_steps=evaluation_steps,
            use_all_docs=use_all_docs, save_checkpoints=save_checkpoints,
            resume_from_checkpoint=resume_from_checkpoint,
            checkpoint_save_steps=checkpoint_save_steps,
            checkpoint_save_total_limit=checkpoint_save_total_limit,
        )  # fmt: skip
        own = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        self.recipe = resolve_recipe(recipe, options, caller=type(self).__name__, known=own)
        self.guard_checks = {
            name: EmbeddingQAFinetuneDataset.coerce(ds, f"guard_checks[{name!r}]")
            for name, ds in (guard_checks or {}).items()
        }
        self.model_id = str(model_id)
        self.output_dir = writable_dir(model_output_path, "model_output_path")
        self.model_output_path = model_output_path  # as given (a str stays a str)
        show_progress = ref.resolve_progress(show_progress_bar, show_progress)
        device = resolve_device(device)
        self.batch_size, self.epochs, self.loss, self.args = batch_size, epochs, loss, args
        self.show_progress = progress_enabled(show_progress, logger)
        if (self.train_dataset.metadata_mode or "embed") != "embed":
            logger.warning(
                "train_dataset was rendered with metadata_mode=%r, but VectorStoreIndex embeds "
                "nodes with MetadataMode.EMBED: training and serving texts differ",
                self.train_dataset.metadata_mode,
            )
        self._setup_model(device, trust_remote_code)
        self._setup_rows()
        self.metrics: dict[str, Any] = {}

    def _setup_model(self, device: str | None, trust_remote_code: bool) -> None:
        from llama_index_finetune_embed.embeddings import load_sentence_transformer
        from llama_index_finetune_embed.finetune import model as setup
        from llama_index_finetune_embed.finetune.losses import check_matryoshka_dims

        recipe = self.recipe
        self.device = device or setup.default_device()
        setup.precision_flags(recipe.precision, self.device)  # fp16 needs a GPU
        self.model = load_sentence_transformer(
            self.model_id, device=self.device, trust_remote_code=trust_remote_code
        )
        self._served_base_length = self.model.max_seq_length  # as LlamaIndex loads the base
        limit = setup.default_max_seq_length(self.model)
        if recipe.max_seq_length is not None and not 0 < recipe.max_seq_length <= limit:
            raise ValueError(
                f"max_seq_length must be in 1..{limit} for this model, "
                f"got {recipe.max_seq_length}"
            )
        self.max_seq_length = recipe.max_seq_length or limit
        self.model.max_seq_length = self.max_seq_length
        check_matryoshka_dims(self.model, recipe.matryoshka_dims)
        # the base weights, kept for the weight-space average after training
        self._base_state = (
            setup.weights_copy(self.model) if recipe.base_weight > 0 or recipe.guard else None
        )
        self.query_prompt, self.document_prompt = setup.resolve_prompts(
            self.model, self.model_id, recipe.query_prompt, recipe.document_prompt
        )

    def _setup_rows(self) -> None:
        """Training rows and their conflict keys; a batch size the data allows."""
        from llama_index_finetune_embed.finetune import sampler

        self._grouped = self.recipe.uses_chunk_groups(custom_loss=self.loss is not None)
        self._chunk_keys = sampler.chunk_conflict_keys(
            self.train_dataset.corpus, self.recipe.overlap_words
        )
        self._rows = sampler.training_rows(self.train_dataset)
        self._keys = sampler.row_keys(self.train_dataset, self._rows, self._chunk_keys)
        items = sampler.chunk_groups(self._rows, self._keys)[1] if self._grouped else self._keys
        self.batch_size = sampler.fit_batch_size(
            self.batch_size, sampler.max_compatible_rows(items),
            hard_negatives=self.recipe.hard_negatives,
        )  # fmt: skip

    # -- training --------------------------------------------------------------------------

    def build_trainer(self) -> tuple[SentenceTransformerTrainer, Any]:
        """(trainer, final val evaluator or ``None``): what :meth:`finetune` runs.

        Mines the hard negatives, sets the dropout and freezes layers on :attr:`model` as the
        recipe says; ``args``, when given, are copied and filled in, never changed.

        Example:
            >>> trainer, evaluator = engine.build_trainer()  # doctest: +SKIP
            >>> type(trainer.loss).__name__  # doctest: +SKIP
            'GroupedMultipleNegativesRankingLoss'
        """
        from llama_index_finetune_embed.finetune import trainer as build
        from llama_index_finetune_embed.finetune.losses import build_loss
        from llama_index_finetune_embed.finetune.model import freeze_lower_layers, set_dropout
        from llama_index_finetune_embed.finetune.model_card import training_text_kept_out
        from llama_index_finetune_embed.finetune.negatives import with_hard_negatives
        from llama_index_finetune_embed.finetune.sampler import build_sampler

        recipe, prompts = self.recipe, (self.query_prompt, self.document_prompt)
        if recipe.hard_negatives:
            self._rows, self._keys = with_hard_negatives(
                self.model, self.train_dataset, self._rows, self._chunk_keys,
                num_negatives=recipe.hard_negatives, relative_margin=recipe.hard_negative_margin,
                prompts=prompts, batch_size=self.batch_size,
            )  # fmt: skip
        set_dropout(self.model, recipe.dropout, recipe.attention_dropout)
        freeze_lower_layers(self.model, recipe.freeze_layers)
        evaluator = None
        if self.val_dataset is not None:
            evaluator = build.build_evaluator(self.val_dataset, batch_size=self.batch_size,
                                              prompts=prompts, show_progress=self.show_progress)
        make_sampler = partial(
            build_sampler, self._rows, self._keys, grouped=self._grouped,
            topic_batches=recipe.topic_batches, model=self.model,
            queries=self.train_dataset.queries, batch_size=self.batch_size,
            prompt=self.query_prompt, seed=recipe.seed,
        )  # fmt: skip
        columns = build.column_prompts(prompts, recipe.hard_negatives)
        if self.args is not None:  # the user's settings win; the recipe fills in the defaults
            args = build.fill_args(self.args, make_sampler=make_sampler, prompts=columns)
        else:
            args = build.build_args(
                recipe, sampler=make_sampler(), prompts=columns,
                output_dir=self.output_dir / "checkpoints", epochs=self.epochs,
                batch_size=self.batch_size, device=self.device,
                evaluate=evaluator is not None, show_progress=self.show_progress,
            )  # fmt: skip
        with training_text_kept_out(self.model.model_card_data, not recipe.card_examples):
            trainer = build.assemble_trainer(
                self.model, args, train=self.train_dataset, rows=self._rows,
                loss=build_loss(self.model, self.loss, recipe, grouped=self._grouped),
                evaluator=evaluator, quiet=self.args is None and not self.show_progress,
            )  # fmt: skip
        return trainer, evaluator

    def finetune(self, **train_kwargs: Any) -> None:
        """Train, keep the best checkpoint (with a val set), save the model, card and metrics.

        Keyword arguments go to ``SentenceTransformerTrainer.train``. Results land in
        :attr:`metrics` and ``model_output_path/metrics.json``.

        Example:
            >>> engine.finetune()  # doctest: +SKIP
            >>> engine.metrics["val"]["val_cosine_mrr@10"]  # doctest: +SKIP
            0.72
        """
        from llama_index_finetune_embed.finetune.model import average_with_base

        trainer, evaluator = self.build_trainer()
        guard = self._make_guard() if trainer.is_world_process_zero() else None
        resume = self._resume_point(trainer)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume, **train_kwargs)
        seconds = time.perf_counter() - start
        if self.recipe.base_weight > 0:
            average_with_base(self.model, self._base_state, self.recipe.base_weight)
        if trainer.is_world_process_zero():
            report = (
                guard.decide(self.model, self._base_state, base_weight=self.recipe.base_weight)
                if guard else None
            )
            if report is not None and report.decision == "base":  # the base exactly as it was
                self.max_seq_length = self.model.max_seq_length = self._served_base_length
            final = evaluator(self.model) if evaluator is not None else {}
            self.metrics = self._summary(trainer, final, seconds, resume)
            if report is not None:
                guarded = report.model_dump(mode="json")
                self.metrics["guard"] = {"message": report.message, **guarded}
        try:
            if trainer.is_world_process_zero():
                self._save()
        finally:
            # under torchrun, ranks leave together (also when rank 0's save failed): a rank
            # that exits while rank 0 still saves can abort in the process group's teardown
            # ("terminate called without an active exception")
            trainer.accelerator.wait_for_everyone()

    def _summary(
        self, trainer: Any, final: dict[str, float], seconds: float, resume: str | None
    ) -> dict[str, Any]:
        from llama_index_finetune_embed.finetune.model_card import recipe_record, training_summary
        from llama_index_finetune_embed.finetune.trainer import steps_run

        record = recipe_record(
            trainer, self.recipe, max_seq_length=self.max_seq_length,
            prompts=(self.query_prompt, self.document_prompt), grouped=self._grouped,
        )  # fmt: skip
        return training_summary(
            trainer, record, base_model=self.model_id, train=self.train_dataset,
            val=self.val_dataset, train_rows=len(self._rows), final=final, seconds=seconds,
            steps_run=steps_run(trainer), resumed_from=resume,
        )  # fmt: skip

    def _make_guard(self) -> RetrievalGuard | None:
        """The guard, with the base scored now (before training) at its served length."""
        if not self.recipe.guard:
            return None
        from llama_index_finetune_embed.finetune.guard import RetrievalGuard, load_canary

        checks = {"canary": load_canary()}
        if self.val_dataset is not None:
            checks["val"] = self.val_dataset
        checks.update(self.guard_checks)
        guard = RetrievalGuard(
            checks, query_prompt=self.query_prompt, document_prompt=self.document_prompt,
            tolerance=self.recipe.guard_tolerance,
            window_length=self.serving_lengths()[1],  # judged in windows, as it is served
        )  # fmt: skip
        guard.score_base(self.model, self._served_base_length)
        return guard

    def _resume_point(self, trainer: Any) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        if not self.recipe.resume_from_checkpoint:
            return None
        folder = Path(trainer.args.output_dir)
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            logger.info("resume_from_checkpoint: no checkpoint in %s, starting fresh", folder)
        else:
            logger.info("resuming from %s", last)
        return last

    def _save(self) -> None:
        """Save to ``model_output_path``; if that fails, to a rescue folder the error names."""
        from llama_index_finetune_embed.finetune.saving import save_or_rescue

        out = self.output_dir
        self.model.prompts = {"query": self.query_prompt, "document": self.document_prompt}
        self.model.default_prompt_name = None
        self.model.max_seq_length, self._window_length = self.serving_lengths()
        save_or_rescue(self._write_model, out)  # raises ModelSaveError after a rescue
        if not self.recipe.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        logger.info("saved the finetuned model to %s", out)

    def _write_model(self, folder: Path) -> None:
        """The model, its card (the library's, which catches its own errors, plus ours) and
        ``metrics.json``, into ``folder``."""
        from llama_index_finetune_embed.embeddings import SERVING_NAME, SERVING_PRECISION
        from llama_index_finetune_embed.finetune.model_card import card_section

        self.model.save_pretrained(str(folder), safe_serialization=True)
        atomic_write_json(folder / SERVING_NAME, {
            "max_seq_length": self.model.max_seq_length, "window_length": self._window_length,
            "precision": SERVING_PRECISION,
        })  # fmt: skip
        card = folder / "README.md"
        base = card.read_text(encoding="utf-8") if card.is_file() else "# Finetuned model\n"
        atomic_write_text(card, base.rstrip("\n") + "\n" + card_section(self.metrics))
        atomic_write_json(folder / "metrics.json", self.metrics)

    def serving_lengths(self) -> tuple[int, int]:
        """(tokens a plain index reads per chunk, tokens per window in ``build_window_index``).

        With ``max_seq_length`` set, both are it; after the guard handed back the base, both are
        the base's. Otherwise windows are the base's configured length (256 for MiniLM) and a
        plain index reads halfway between it and the trained length (384 for MiniLM trained at
        512): measured on the human sets and Uber val (docs/guide.md, "Long chunks"), windows of
        the base's length beat windows of the trained length on long chunks (+5.3 and +2.1 NDCG@10),
        and 384 is the one plain length with no loss measured anywhere (256 lost on SciFact,
        512 on 10-K pages).
        """
        window, trained = self._served_base_length, self.max_seq_length
        if self.recipe.max_seq_length is not None or not window or trained <= window:
            return trained, trained
        return window + (trained - window) // 2, window

    def get_finetuned_model(self, **model_kwargs: Any) -> BaseEmbedding:
        """The finetuned model as a LlamaIndex ``HuggingFaceEmbedding`` with its training prompts.

        Same as :func:`load_finetuned_model` on ``model_output_path``. In a plain
        ``VectorStoreIndex`` a chunk longer than the model's window is truncated, as
        ``HuggingFaceEmbedding`` does. When chunks are longer than that (LlamaIndex's default
        chunk is 1,024 tokens; MiniLM reads 256), serve it in ``build_window_index(nodes,
        embed_model)`` instead: every chunk read whole as windows, each scored by its best window,
        which won or tied on every set measured (docs/guide.md, "Long chunks").

        Example:
            >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
            >>> len(embed_model.get_query_embedding("When was Lyft founded?"))  # doctest: +SKIP
            384
            >>> index = build_window_index(nodes, embed_model)  # doctest: +SKIP
        """
        return load_finetuned_model(self.model_output_path, **model_kwargs)


def load_finetuned_model(
    model_output_path: str | os.PathLike[str], **model_kwargs: Any
) -> BaseEmbedding:
    """A saved finetuned model as a LlamaIndex embedding that embeds exactly as in training.

    Needs only the directory (works in a fresh process): the query and document prompts saved
    with the model are passed to ``HuggingFaceEmbedding`` explicitly, its max length is the one
    trained with, and ``trust_remote_code`` stays off unless passed.

    Example:
        >>> embed_model = load_finetuned_model("exp_finetune")  # doctest: +SKIP
    """
    from llama_index_finetune_embed.embeddings import load_embed_model

    path = Path(model_output_path)
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"no finetuned model in {path}: run SentenceTransformersFinetuneEngine.finetune() "
            "first, or pass the directory it saved to"
        )
    return load_embed_model(path, **model_kwargs)


__all__ = ["SentenceTransformersFinetuneEngine", "load_finetuned_model"]
