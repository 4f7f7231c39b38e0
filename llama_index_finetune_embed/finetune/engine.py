"""SentenceTransformersFinetuneEngine: dataset -> trainer -> saved model, card -> embed model."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from llama_index_finetune_embed._io import atomic_write_json, atomic_write_text
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from torch import nn

logger = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp16", "fp32"]
_VAL_NAME = "val"
_BEST_METRIC = f"eval_{_VAL_NAME}_cosine_mrr@10"


class SentenceTransformersFinetuneEngine:
    """Finetune a sentence-transformers model on (query, chunk) pairs; get a LlamaIndex embedding.

    Drop-in for llama-index-finetuning's engine of the same name, trained with
    ``SentenceTransformerTrainer``. The default recipe: MultipleNegativesRankingLoss in both
    directions over batches of ``batch_size`` chunks, each with all its questions and encoded
    once (``group_by_chunk``), drawn from one topic cluster of the base model's question
    embeddings (``topic_batches``: in-batch negatives about the same thing, not random ones); no
    two chunks of a batch overlap or share a text, so they are never false negatives of each
    other; 2 epochs with warmup, the longest input the model takes (<= 512 tokens), bf16 autocast
    where the hardware has it, and dropout off (on a CPU it makes training about 4x slower for
    no measured gain). Then the trained weights are averaged with the base's (``base_weight``
    0.5, WiSE-FT), so that questions unlike the training ones do not pay for the gain, and the
    guard checks the result against the base on questions people wrote (``guard``). Runs
    unchanged under ``torchrun`` (DDP); rank 0 saves.

    Args:
        train_dataset: the training pairs.
        model_id: hub id, local directory, or ``"local:all-MiniLM-L6-v2"`` (the packaged model).
        model_output_path: where the finetuned model, its card and ``metrics.json`` go.
        val_dataset: optional; evaluated during training (MRR@10), the best checkpoint is kept.
        batch_size: chunks per batch (each chunk is a negative for every other chunk's
            questions); with ``group_by_chunk=False``, (question, chunk) rows per batch.
        epochs: passes over the training pairs.
        loss: ``None`` (the recipe), a sentence-transformers loss built on :attr:`model`, or a
            callable ``model -> loss``.
        learning_rate: peak learning rate (linear warmup, then linear decay).
        warmup_ratio: fraction of the steps spent warming up.
        weight_decay: AdamW weight decay.
        max_seq_length: tokens per text when training and serving; ``None``: what the model takes.
        precision: ``"auto"`` (bf16 where the CPU/GPU supports it, else fp32) or one forced.
        dropout: a float sets the hidden dropout layers while training; ``None`` keeps the
            model's. Off by default: measured on the seed data (2-core CPU, bf16), keeping
            MiniLM's 0.1 made training 4.5x slower (366 s vs 82 s) at the same MRR@10.
        attention_dropout: likewise for the attention-probability dropout.
        freeze_layers: freeze the token embeddings and this many lowest layers (faster
            backward; 0 trains everything).
        hard_negatives: negatives per row mined with the base model (0: in-batch only).
        hard_negative_margin: a mined negative scores at most ``(1 - margin)`` x the positive.
        matryoshka_dims: also train these truncated sizes (MatryoshkaLoss), e.g. ``(384, 128)``.
        cached_loss: CachedMultipleNegativesRankingLoss: large batches in small memory.
        mini_batch_size: the cached loss's mini-batch size.
        symmetric: also rank the queries given a chunk (a second loss direction, no extra pass).
        group_by_chunk: put every question of a chunk in the chunk's batch and encode the chunk
            once (about half the compute with two questions per chunk). Applies to the default
            loss without hard negatives or the cached loss; otherwise a chunk's questions go to
            different batches.
        topic_batches: cluster the chunks by their questions' base-model embeddings (k-means,
            about ``batch_size`` chunks per cluster) and fill each batch from one cluster.
        overlap_words: chunks whose opening ``overlap_words`` words occur in another chunk stay
            out of each other's batches; ``None`` turns the check off.
        query_prompt: ``None``: the model's saved query prompt or its family's (bge, e5).
        document_prompt: likewise for chunks. Both are saved into the finetuned model.
        checkpoint_steps: save a resumable checkpoint every N steps (``None``: once per epoch
            with a val set, else none).
        resume_from_checkpoint: ``True`` continues from the last checkpoint in the output path.
        keep_checkpoints: keep ``model_output_path/checkpoints`` after a successful run.
        seed: seed for shuffling and initialisation.
        show_progress: show progress bars.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` picks the GPU when there is one.
        trust_remote_code: let the model run code from its repository (off by default).
        args: ``SentenceTransformerTrainingArguments``; when given, they override everything
            above that they cover (``output_dir`` included).
        base_weight: after training, the saved weights are ``base_weight`` x the base model's
            plus ``1 - base_weight`` x the trained ones (weight-space ensembling, WiSE-FT,
            Wortsman et al. 2022): it keeps most of the gain on the training domain and what
            the base model knew elsewhere. ``0.0`` keeps the trained weights as they are.
            Default 0.5: on questions people wrote (``benchmarks/bench_human.py``, 2 seeds) the
            trained weights lost 2.6-2.7 NDCG@10 points on SciFact while the average lost none
            (+0.3, -0.2) and kept SQuAD's gain (+2.0, +2.5), at 0.701-0.706 Uber val MRR@10
            instead of 0.713-0.715.
        guard: after training, score the model and its base (as LlamaIndex loads it) on the
            packaged canary of questions people wrote and on ``val_dataset``; where the model
            loses, hand back its average with the base that does not, or the base itself
            (:mod:`llama_index_finetune_embed.guard`; the decision is in ``metrics["guard"]``).
        guard_tolerance: NDCG@10 points the model may trail its base by on a guard check.
        guard_checks: more held-out sets for the guard, by name (e.g. questions about chunks
            kept out of training), checked without being used during training.

    Example:
        >>> engine = SentenceTransformersFinetuneEngine(
        ...     train_dataset, model_id="local:all-MiniLM-L6-v2", model_output_path="exp_finetune"
        ... )  # doctest: +SKIP
        >>> engine.finetune()  # doctest: +SKIP
        >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
        >>> index = VectorStoreIndex(nodes, embed_model=embed_model)  # doctest: +SKIP
    """

    def __init__(
        self,
        train_dataset: EmbeddingQAFinetuneDataset,
        model_id: str = "BAAI/bge-small-en-v1.5",
        model_output_path: str | os.PathLike[str] = "exp_finetune",
        val_dataset: EmbeddingQAFinetuneDataset | None = None,
        batch_size: int = 16,
        epochs: int = 2,
        loss: nn.Module | Callable[[SentenceTransformer], nn.Module] | None = None,
        *,
        learning_rate: float = 1e-4,
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
        max_seq_length: int | None = None,
        precision: Precision = "auto",
        dropout: float | None = 0.0,
        attention_dropout: float | None = 0.0,
        freeze_layers: int = 0,
        hard_negatives: int = 0,
        hard_negative_margin: float = 0.05,
        matryoshka_dims: Sequence[int] | None = None,
        cached_loss: bool = False,
        mini_batch_size: int = 16,
        symmetric: bool = True,
        group_by_chunk: bool = True,
        topic_batches: bool = True,
        overlap_words: int | None = 16,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        checkpoint_steps: int | None = None,
        resume_from_checkpoint: bool = False,
        keep_checkpoints: bool = False,
        seed: int = 42,
        show_progress: bool = False,
        device: str | None = None,
        trust_remote_code: bool = False,
        args: SentenceTransformerTrainingArguments | None = None,
        base_weight: float = 0.5,
        guard: bool = True,
        guard_tolerance: float = 1.0,
        guard_checks: Mapping[str, EmbeddingQAFinetuneDataset] | None = None,
    ) -> None:
        self.train_dataset = EmbeddingQAFinetuneDataset.coerce(train_dataset, "train_dataset")
        self.val_dataset = (
            None if val_dataset is None
            else EmbeddingQAFinetuneDataset.coerce(val_dataset, "val_dataset")
        )
        _check_numbers(batch_size, epochs, learning_rate, warmup_ratio, hard_negatives,
                       freeze_layers, hard_negative_margin, mini_batch_size, checkpoint_steps,
                       overlap_words)
        if precision not in get_args(Precision):
            raise ValueError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
        for key, value in {"dropout": dropout, "attention_dropout": attention_dropout}.items():
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1) or None, got {value}")
        if not 0.0 <= base_weight < 1.0:
            raise ValueError(f"base_weight must be in [0, 1), got {base_weight}")
        self.base_weight = base_weight
        self.guard, self.guard_tolerance = guard, guard_tolerance
        self.guard_checks = {
            name: EmbeddingQAFinetuneDataset.coerce(ds, f"guard_checks[{name!r}]")
            for name, ds in (guard_checks or {}).items()
        }
        if guard_tolerance < 0:
            raise ValueError(f"guard_tolerance must be >= 0, got {guard_tolerance}")
        self.model_id = str(model_id)
        self.model_output_path = _check_output_path(model_output_path)
        self.batch_size, self.epochs, self.loss, self.args = batch_size, epochs, loss, args
        self.resume_from_checkpoint = resume_from_checkpoint
        self.keep_checkpoints = keep_checkpoints
        self.show_progress = show_progress
        self.options: dict[str, Any] = {
            "learning_rate": learning_rate, "warmup_ratio": warmup_ratio,
            "weight_decay": weight_decay, "precision": precision, "dropout": dropout,
            "attention_dropout": attention_dropout,
            "freeze_layers": freeze_layers,
            "group_by_chunk": group_by_chunk, "topic_batches": topic_batches,
            "hard_negatives": hard_negatives, "hard_negative_margin": hard_negative_margin,
            "matryoshka_dims": list(matryoshka_dims) if matryoshka_dims else None,
            "cached_loss": cached_loss, "mini_batch_size": mini_batch_size,
            "symmetric": symmetric, "overlap_words": overlap_words,
            "checkpoint_steps": checkpoint_steps, "seed": seed,
        }
        if (self.train_dataset.metadata_mode or "embed") != "embed":
            logger.warning(
                "train_dataset was rendered with metadata_mode=%r, but VectorStoreIndex embeds "
                "nodes with MetadataMode.EMBED: training and serving texts differ",
                self.train_dataset.metadata_mode,
            )
        self._setup_model(device, trust_remote_code, max_seq_length, query_prompt, document_prompt)
        self.metrics: dict[str, Any] = {}

    def _setup_model(
        self,
        device: str | None,
        trust_remote_code: bool,
        max_seq_length: int | None,
        query_prompt: str | None,
        document_prompt: str | None,
    ) -> None:
        from llama_index_finetune_embed import _training
        from llama_index_finetune_embed._models import load_sentence_transformer

        self.device = device or _training.default_device()
        _training.precision_flags(self.options["precision"], self.device)  # fp16 needs a GPU
        self.model = load_sentence_transformer(
            self.model_id, device=self.device, trust_remote_code=trust_remote_code
        )
        self._served_base_length = self.model.max_seq_length  # as LlamaIndex loads the base
        limit = _training.default_max_seq_length(self.model)
        if max_seq_length is not None and not 0 < max_seq_length <= limit:
            raise ValueError(
                f"max_seq_length must be in 1..{limit} for this model, got {max_seq_length}"
            )
        self.max_seq_length = max_seq_length or limit
        self.model.max_seq_length = self.max_seq_length
        # the base weights, kept for the weight-space average after training
        self._base_state = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.base_weight > 0 or self.guard else None
        )
        self.query_prompt, self.document_prompt = _training.resolve_prompts(
            self.model, self.model_id, query_prompt, document_prompt
        )
        self._chunk_keys = _training.chunk_conflict_keys(
            self.train_dataset.corpus, self.options["overlap_words"]
        )
        self._rows = [(qid, doc_id, []) for qid, _, doc_id in self.train_dataset.pairs()]
        self._keys = _training.row_keys(self.train_dataset, self._rows, self._chunk_keys)
        fits = _training.max_compatible_rows(self._keys)
        if self.batch_size > fits:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the number of distinct chunks a "
                f"batch can hold ({fits}: rows sharing a chunk, an overlapping chunk or a query "
                f"cannot share a batch); lower batch_size to at most {fits}"
            )

    # -- training --------------------------------------------------------------------------

    def finetune(self, **train_kwargs: Any) -> None:
        """Train, keep the best checkpoint (with a val set), save the model, card and metrics.

        Keyword arguments go to ``SentenceTransformerTrainer.train``. Results land in
        :attr:`metrics` and ``model_output_path/metrics.json``.

        Example:
            >>> engine.finetune()  # doctest: +SKIP
            >>> engine.metrics["val"]["val_cosine_mrr@10"]  # doctest: +SKIP
            0.72
        """
        from llama_index_finetune_embed import _training

        trainer, evaluator = _training.build_trainer(self)
        guard = self._make_guard() if trainer.is_world_process_zero() else None
        resume = self._resume_point(trainer)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume, **train_kwargs)
        seconds = time.perf_counter() - start
        if self.base_weight > 0:
            _training.average_with_base(self.model, self._base_state, self.base_weight)
        if trainer.is_world_process_zero():
            report = (
                guard.decide(self.model, self._base_state, base_weight=self.base_weight)
                if guard else None
            )
            if report is not None and report.decision == "base":  # the base exactly as it was
                self.max_seq_length = self.model.max_seq_length = self._served_base_length
            final = evaluator(self.model) if evaluator is not None else {}
            self.metrics = _training.summary(self, trainer, final, seconds, resume)
            if report is not None:
                guarded = report.model_dump(mode="json")
                self.metrics["guard"] = {"message": report.message, **guarded}
            self._save(trainer)
        # under torchrun, ranks leave together: a rank that exits while rank 0 still saves can
        # abort in the process group's teardown ("terminate called without an active exception")
        trainer.accelerator.wait_for_everyone()

    def _make_guard(self) -> Any:
        """The guard, with the base scored now (before training) at its served length."""
        if not self.guard:
            return None
        from llama_index_finetune_embed.guard import RetrievalGuard, load_canary

        checks = {"canary": load_canary()}
        if self.val_dataset is not None:
            checks["val"] = self.val_dataset
        checks.update(self.guard_checks)
        guard = RetrievalGuard(
            checks, query_prompt=self.query_prompt, document_prompt=self.document_prompt,
            tolerance=self.guard_tolerance,
        )  # fmt: skip
        guard.score_base(self.model, self._served_base_length)
        return guard

    def _resume_point(self, trainer: Any) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        if not self.resume_from_checkpoint:
            return None
        folder = Path(trainer.args.output_dir)
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            logger.info("resume_from_checkpoint: no checkpoint in %s, starting fresh", folder)
        else:
            logger.info("resuming from %s", last)
        return last

    def _save(self, trainer: Any) -> None:
        from llama_index_finetune_embed import _training

        out = self.model_output_path
        self.model.prompts = {"query": self.query_prompt, "document": self.document_prompt}
        self.model.default_prompt_name = None
        try:
            self.model.save_pretrained(str(out), safe_serialization=True)
        except Exception as exc:  # the library's card generation must not lose a trained model
            logger.warning("model card generation failed (%s); saving without it", exc)
            self.model.save_pretrained(str(out), safe_serialization=True, create_model_card=False)
        card = out / "README.md"
        base = card.read_text(encoding="utf-8") if card.is_file() else "# Finetuned model\n"
        atomic_write_text(card, base.rstrip("\n") + "\n" + _training.card_section(self.metrics))
        atomic_write_json(out / "metrics.json", self.metrics)
        if not self.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        logger.info("saved the finetuned model to %s", out)

    def get_finetuned_model(self, **model_kwargs: Any) -> BaseEmbedding:
        """The finetuned model as a LlamaIndex ``HuggingFaceEmbedding`` with its training prompts.

        Same as :func:`load_finetuned_model` on ``model_output_path``. Chunks longer than the
        model's window are truncated, as ``HuggingFaceEmbedding`` does; pass
        ``long_texts="window"`` to embed them whole (token-weighted mean of consecutive windows).

        Example:
            >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
            >>> len(embed_model.get_query_embedding("When was Lyft founded?"))  # doctest: +SKIP
            384
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
    from llama_index_finetune_embed._models import load_embed_model

    path = Path(model_output_path)
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"no finetuned model in {path}: run SentenceTransformersFinetuneEngine.finetune() "
            "first, or pass the directory it saved to"
        )
    return load_embed_model(path, **model_kwargs)


# -- input checks (raised where the input enters) --------------------------------------------


def _check_numbers(
    batch_size: int,
    epochs: int,
    learning_rate: float,
    warmup_ratio: float,
    hard_negatives: int,
    freeze_layers: int,
    margin: float,
    mini_batch_size: int,
    checkpoint_steps: int | None,
    overlap_words: int | None,
) -> None:
    positive_ints = {"batch_size": batch_size, "epochs": epochs, "mini_batch_size": mini_batch_size}
    if checkpoint_steps is not None:
        positive_ints["checkpoint_steps"] = checkpoint_steps
    if overlap_words is not None:
        positive_ints["overlap_words"] = overlap_words
    for key, value in positive_ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if not isinstance(freeze_layers, int) or freeze_layers < 0:
        raise ValueError(f"freeze_layers must be an integer >= 0, got {freeze_layers!r}")
    if not isinstance(hard_negatives, int) or hard_negatives < 0:
        raise ValueError(f"hard_negatives must be an integer >= 0, got {hard_negatives!r}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"hard_negative_margin must be in [0, 1), got {margin}")


def _check_output_path(path: str | os.PathLike[str]) -> Path:
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"model_output_path {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"model_output_path {out} is not writable ({exc.strerror or exc}); "
            "pass a directory you can write to"
        ) from None
    return out


__all__ = ["SentenceTransformersFinetuneEngine", "load_finetuned_model"]
