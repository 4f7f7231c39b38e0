"""FinetuneRecipe: every training option of the finetune stage, validated once at construction."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Precision = Literal["auto", "bf16", "fp16", "fp32"]


def _unrecorded(default: Any) -> Any:
    """A field that is not listed under "Recipe" in metrics.json and the model card as given
    (the engine records the resolved length and prompts, and the base weight, itself)."""
    return field(default=default, metadata={"recorded": False})


@dataclass(frozen=True, kw_only=True)
class FinetuneRecipe:
    """How :class:`SentenceTransformersFinetuneEngine` trains: one validated, frozen settings.

    Every field is checked here, when the recipe is made (the limits that depend on the model,
    such as the longest ``max_seq_length`` or the widest ``matryoshka_dims``, when the engine
    loads it). The engine takes a recipe (``recipe=``), these fields as keywords, or both (the
    keywords override the recipe's fields).

    Args:
        learning_rate: peak learning rate (linear warmup, then linear decay).
        warmup_ratio: fraction of the steps spent warming up.
        weight_decay: AdamW weight decay.
        precision: ``"auto"`` (bf16 where the CPU/GPU supports it, else fp32) or one forced.
        dropout: a float sets the hidden dropout layers while training; ``None`` keeps the
            model's. Off by default: measured on the seed data (2-core CPU, bf16), keeping
            MiniLM's 0.1 made training 4.5x slower (366 s vs 82 s) at the same MRR@10.
        attention_dropout: likewise for the attention-probability dropout.
        freeze_layers: freeze the token embeddings and this many lowest layers (faster
            backward; 0 trains everything).
        group_by_chunk: put every question of a chunk in the chunk's batch and encode the chunk
            once (about half the compute with two questions per chunk). Applies to the default
            loss without hard negatives or the cached loss; otherwise a chunk's questions go to
            different batches.
        topic_batches: cluster the chunks by their questions' base-model embeddings (k-means,
            about ``batch_size`` chunks per cluster) and fill each batch from one cluster.
        hard_negatives: negatives per row mined with the base model (0: in-batch only).
        hard_negative_margin: a mined negative scores at most ``(1 - margin)`` x the positive.
        matryoshka_dims: also train these truncated sizes (MatryoshkaLoss), e.g. ``(384, 128)``.
        cached_loss: CachedMultipleNegativesRankingLoss: large batches in small memory.
        mini_batch_size: the cached loss's mini-batch size.
        symmetric: also rank the queries given a chunk (a second loss direction, no extra pass).
        overlap_words: chunks whose opening ``overlap_words`` words occur in another chunk stay
            out of each other's batches; ``None`` turns the check off.
        checkpoint_steps: save a resumable checkpoint every N steps (``None``: once per epoch
            with a val set, else none).
        seed: seed for shuffling and initialisation.
        max_seq_length: tokens per text when training and serving; ``None``: what the model takes.
        query_prompt: ``None``: the model's saved query prompt or its family's (bge, e5).
        document_prompt: likewise for chunks. Both are saved into the finetuned model.
        resume_from_checkpoint: ``True`` continues from the last checkpoint in the output path.
        keep_checkpoints: keep ``model_output_path/checkpoints`` after a successful run.
        base_weight: after training, the saved weights are ``base_weight`` x the base model's
            plus ``1 - base_weight`` x the trained ones (weight-space ensembling, WiSE-FT,
            Wortsman et al. 2022): it keeps most of the gain on the training domain and what
            the base model knew elsewhere. ``0.0`` keeps the trained weights as they are.
            Default 0.5: on questions people wrote (``benchmarks/bench_human.py``, 2 seeds) the
            trained weights lost 2.6-2.7 NDCG@10 points on SciFact while the average lost none
            (+0.3, -0.2) and kept SQuAD's gain (+2.0, +2.5), at 0.701-0.706 Uber val MRR@10
            instead of 0.713-0.715.
        guard: after training, score the model and its base (as LlamaIndex loads it) on the
            packaged canary of questions people wrote and on the val set; where the model
            loses, hand back its average with the base that does not, or the base itself
            (:mod:`llama_index_finetune_embed.finetune.guard`; the decision is in
            ``metrics["guard"]``).
        guard_tolerance: NDCG@10 points the model may trail its base by on a guard check.
        card_examples: let the saved model card (``README.md``) quote training texts, as
            sentence-transformers does by default (widget examples, sample rows of the
            training data, usage examples). Off by default: whoever gets the model would get
            pieces of your documents and questions with it.

    Example:
        >>> recipe = FinetuneRecipe(learning_rate=2e-5, matryoshka_dims=(32, 16))
        >>> recipe.matryoshka_dims, recipe.base_weight
        ((32, 16), 0.5)
        >>> FinetuneRecipe(warmup_ratio=1.5)
        Traceback (most recent call last):
        ...
        ValueError: warmup_ratio must be in [0, 1), got 1.5
    """

    # recorded under "Recipe" (metrics.json, model card), in this order
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    precision: Precision = "auto"
    dropout: float | None = 0.0
    attention_dropout: float | None = 0.0
    freeze_layers: int = 0
    group_by_chunk: bool = True
    topic_batches: bool = True
    hard_negatives: int = 0
    hard_negative_margin: float = 0.05
    matryoshka_dims: tuple[int, ...] | None = None
    cached_loss: bool = False
    mini_batch_size: int = 16
    symmetric: bool = True
    overlap_words: int | None = 16
    checkpoint_steps: int | None = None
    seed: int = 42
    # recorded by the engine as resolved (length, prompts, base weight), or not at all
    max_seq_length: int | None = _unrecorded(None)
    query_prompt: str | None = _unrecorded(None)
    document_prompt: str | None = _unrecorded(None)
    resume_from_checkpoint: bool = _unrecorded(False)
    keep_checkpoints: bool = _unrecorded(False)
    base_weight: float = _unrecorded(0.5)
    guard: bool = _unrecorded(True)
    guard_tolerance: float = _unrecorded(1.0)
    card_examples: bool = _unrecorded(False)

    def __post_init__(self) -> None:
        dims = self.matryoshka_dims
        object.__setattr__(self, "matryoshka_dims", tuple(dims) if dims else None)
        for key in ("mini_batch_size", "checkpoint_steps", "overlap_words", "max_seq_length"):
            value = getattr(self, key)
            if value is not None or key == "mini_batch_size":
                check_positive_int(key, value)
        self._check_ranges()
        if self.matryoshka_dims is not None and not all(
            _is_int(d) and d >= 1 for d in self.matryoshka_dims
        ):
            raise ValueError(
                f"matryoshka_dims must be positive integers, got {list(self.matryoshka_dims)}"
            )

    def _check_ranges(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for key in ("freeze_layers", "hard_negatives"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {getattr(self, key)!r}")
        if not 0.0 <= self.hard_negative_margin < 1.0:
            raise ValueError(
                f"hard_negative_margin must be in [0, 1), got {self.hard_negative_margin}"
            )
        if self.precision not in get_args(Precision):
            raise ValueError(
                f"precision must be one of {get_args(Precision)}, got {self.precision!r}"
            )
        for key in ("dropout", "attention_dropout"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1) or None, got {value}")
        if not 0.0 <= self.base_weight < 1.0:
            raise ValueError(f"base_weight must be in [0, 1), got {self.base_weight}")
        if self.guard_tolerance < 0:
            raise ValueError(f"guard_tolerance must be >= 0, got {self.guard_tolerance}")

    def uses_chunk_groups(self, custom_loss: bool) -> bool:
        """Whether a chunk's questions share its batch and one encoding of it (default loss)."""
        return bool(self.group_by_chunk) and not (
            custom_loss or self.hard_negatives or self.cached_loss
        )

    def recorded(self) -> dict[str, Any]:
        """The options listed under "Recipe" in metrics.json and the model card, in order."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("recorded", True)
        }
        out["matryoshka_dims"] = list(self.matryoshka_dims) if self.matryoshka_dims else None
        return out


def resolve_recipe(
    recipe: FinetuneRecipe | None,
    options: Mapping[str, Any],
    *,
    caller: str,
    known: Iterable[str] = (),
) -> FinetuneRecipe:
    """``recipe`` (or the default one) with ``options`` overriding its fields, validated.

    An unknown option raises one ``TypeError`` naming it and the closest valid name (among the
    recipe's fields and ``known``, the caller's own parameters).
    """
    if recipe is not None and not isinstance(recipe, FinetuneRecipe):
        raise TypeError(f"recipe must be a FinetuneRecipe, got {type(recipe).__name__}")
    names = [f.name for f in dataclasses.fields(FinetuneRecipe)]
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(key, [*names, *known], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{caller} got an unexpected keyword argument {key!r}{hint} "
                "(the training options are the fields of FinetuneRecipe)"
            )
    if recipe is None:
        return FinetuneRecipe(**options)
    return dataclasses.replace(recipe, **options) if options else recipe


def check_positive_int(key: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is an int >= 1 (a bool is not)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["FinetuneRecipe", "Precision", "resolve_recipe"]
