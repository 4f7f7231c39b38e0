"""EmbeddingAdapterFinetuneEngine: llama-index-finetuning's adapter engine, on cached vectors."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

from llama_index.core.base.embeddings.base import BaseEmbedding

from llama_index_finetune_embed._compat import pick_dataset, resolve_device, warn_unused
from llama_index_finetune_embed._io import progress_enabled
from llama_index_finetune_embed.adapter._embed_cache import EmbeddedDataset, EmbeddingCache
from llama_index_finetune_embed.adapter.model import (
    CONFIG_NAME,
    LEGACY_CONFIG,
    AdapterEmbedding,
    class_path,
)
from llama_index_finetune_embed.adapter.train import TrainSettings, train_adapter
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

logger = logging.getLogger(__name__)

AdapterKind = Literal["linear", "two_layer"]
# llama-index-finetuning's train_model() keywords (its **train_kwargs) that have no use here
_UNUSED_TRAIN_KWARGS = {
    "steps_per_epoch": "an epoch is one pass over the pairs",
    "warmup_steps": "the learning rate is constant (AdamW)",
    "max_grad_norm": "gradients are not clipped",
    "show_progress_bar": "use verbose= or show_progress=",
}


class EmbeddingAdapterFinetuneEngine:
    """Trains a query-side adapter over a frozen base model; gives back an ``AdapterEmbedding``.

    Drop-in for llama-index-finetuning's engine of the same name, on llama-index-embeddings-
    adapter's classes: the adapter is a ``BaseAdapter`` (``LinearLayer`` by default,
    ``TwoLayerNN`` or your own subclass as ``adapter_model``), saved with ``BaseAdapter.save``,
    so ``AdapterEmbeddingModel(base, model_output_path, adapter_cls)`` loads it. Unlike the
    reference, the base model embeds every training query and chunk once (cached in
    ``cache_dir``: a rerun calls it for nothing already seen, API models are not billed twice),
    a query's other relevant chunks are never its negatives, every relevant chunk is a pair,
    and with ``val_dataset`` the best epoch by MRR@10 is kept (epoch 0, the base model,
    included). Only queries pass through the adapter, so an index built with the base model
    stays valid.

    Args (llama-index-finetuning 0.4.2's, in its positional order):
        dataset: (query, chunk) pairs (``train_dataset=`` is the same, keyword-only).
        embed_model: any LlamaIndex ``BaseEmbedding``; frozen (``base_embed_model=`` too).
        batch_size: (query, chunk) pairs per step; the other chunks are the negatives.
        epochs: passes over the pairs.
        adapter_model: a ``BaseAdapter`` to train (default: ``adapter``'s kind of adapter).
        dim: the base model's dimension (default: read from its vectors; checked if given).
        device: where to train (``"cpu"``, ``"cuda"``, ``torch.device``; default CPU: the
            adapter is small and its inputs are cached vectors).
        model_output_path: where the trained adapter is saved.
        model_checkpoint_path: if set, ``BaseAdapter.save`` every ``checkpoint_save_steps``
            steps to ``<model_checkpoint_path>/step_<n>``, as the reference.
        checkpoint_save_steps: see ``model_checkpoint_path``.
        verbose: progress bars and per-epoch loss in the log (same as ``show_progress=True``).
        bias: the default ``LinearLayer``'s bias.
        **train_kwargs: the reference's ``train_model`` keywords: ``optimizer_class`` and
            ``optimizer_params`` (``{"lr": ...}``) are used; ``steps_per_epoch``,
            ``warmup_steps``, ``max_grad_norm`` are accepted and warn.

    Keyword-only (ours):
        adapter: ``"linear"`` (``LinearLayer(dim, dim, bias=bias)``) or ``"two_layer"``
            (``TwoLayerNN(dim, hidden_dim, dim, bias=True, add_residual=True)``); both start
            as the identity, i.e. the base model.
        cache_dir: embedding cache (default ``model_output_path/embedding_cache``).
        learning_rate, weight_decay: AdamW's rate; the decay pulls the weights back to where
            they started (the adapter towards the base model). Picked with ``epochs=20``,
            ``batch_size=32`` on a held-out 25% of the Lyft seed questions with MiniLM.
        scale: inverse temperature of the cosine similarities (20 = sentence-transformers').
        hidden_dim: width of the two-layer adapter (default 2 x dim).
        seed: seeds initialisation and shuffling (the caller's torch RNG state is left alone).
        val_dataset: MRR@10 on it is logged per epoch and the best epoch is kept.
        num_workers: threads embedding queries for models without a batch query call (API).
        show_progress: tqdm bars (``None``: follow ``verbose``, else the log level).

    Example:
        >>> engine = EmbeddingAdapterFinetuneEngine(train_ds, OpenAIEmbedding())  # doctest: +SKIP
        >>> engine.finetune()  # doctest: +SKIP
        >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
        >>> retriever = index.as_retriever(embed_model=embed_model)  # same index  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: EmbeddingQAFinetuneDataset | None = None,
        embed_model: BaseEmbedding | None = None,
        batch_size: int = 32,
        epochs: int = 20,
        adapter_model: Any = None,
        dim: int | None = None,
        device: Any = None,
        model_output_path: str | os.PathLike[str] = "adapter_out",
        model_checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_save_steps: int = 100,
        verbose: bool = False,
        bias: bool = False,
        *,
        train_dataset: EmbeddingQAFinetuneDataset | None = None,
        base_embed_model: BaseEmbedding | None = None,
        adapter: AdapterKind = "linear",
        cache_dir: str | os.PathLike[str] | None = None,
        learning_rate: float = 3e-4,
        weight_decay: float = 1.0,
        scale: float = 20.0,
        hidden_dim: int | None = None,
        seed: int = 0,
        val_dataset: EmbeddingQAFinetuneDataset | None = None,
        num_workers: int = 1,
        show_progress: bool | None = None,
        query_workers: int | None = None,
        **train_kwargs: Any,
    ) -> None:
        if query_workers is not None:
            warnings.warn(
                "query_workers= is deprecated: use num_workers=", DeprecationWarning, stacklevel=2
            )
            num_workers = query_workers
        self.train_dataset = EmbeddingQAFinetuneDataset.coerce(
            pick_dataset(dataset, train_dataset), "train_dataset"
        )
        self.val_dataset = (
            None if val_dataset is None
            else EmbeddingQAFinetuneDataset.coerce(val_dataset, "val_dataset")
        )
        self.base_embed_model = _pick_base(embed_model, base_embed_model)
        self.adapter_model = _check_adapter(adapter, adapter_model)
        _check_numbers(epochs=epochs, batch_size=batch_size, num_workers=num_workers,
                       checkpoint_save_steps=checkpoint_save_steps, learning_rate=learning_rate,
                       scale=scale, hidden_dim=hidden_dim, dim=dim)  # fmt: skip
        self.adapter, self.dim, self.bias, self.hidden_dim = adapter, dim, bias, hidden_dim
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.learning_rate, self.weight_decay, self.scale = learning_rate, weight_decay, scale
        self.device = resolve_device(device) or "cpu"
        self.show_progress = progress_enabled(
            show_progress if show_progress is not None else (verbose or None), logger
        )
        self.model_output_path = model_output_path  # as given
        self.output_dir = Path(model_output_path)
        self.model_checkpoint_path = model_checkpoint_path
        self.checkpoint_save_steps = checkpoint_save_steps
        self._optimizer = _optimizer_kwargs(train_kwargs)
        self.cache = EmbeddingCache(
            cache_dir if cache_dir is not None else self.output_dir / "embedding_cache",
            self.base_embed_model,
            num_workers=num_workers,
        )
        self.history: list[dict[str, float]] = []
        self._model: AdapterEmbedding | None = None

    @classmethod
    def from_model_path(
        cls,
        dataset: EmbeddingQAFinetuneDataset,
        embed_model: BaseEmbedding,
        model_path: str | os.PathLike[str],
        model_cls: type | None = None,
        **kwargs: Any,
    ) -> EmbeddingAdapterFinetuneEngine:
        """An engine that goes on training the adapter saved in ``model_path`` (the reference's).

        ``model_cls`` is its ``BaseAdapter`` class (default ``LinearLayer``); ``kwargs`` go to
        the constructor.
        """
        from llama_index.embeddings.adapter import LinearLayer

        model = (model_cls or LinearLayer).load(str(model_path))
        return cls(dataset, embed_model, adapter_model=model, **kwargs)

    @property
    def embed_model(self) -> BaseEmbedding:
        """The frozen base model (the reference's attribute name)."""
        return self.base_embed_model

    def finetune(self) -> None:
        """Embed the datasets (cached), train the adapter, save it to ``model_output_path``."""
        import torch

        train = EmbeddedDataset(self.cache, self.train_dataset, self.show_progress)
        val = (
            None if self.val_dataset is None
            else EmbeddedDataset(self.cache, self.val_dataset, self.show_progress)
        )
        logger.info(
            "base model embedded %d new texts (the rest came from %s)",
            self.cache.computed, self.cache.path,
        )  # fmt: skip
        dim = train.queries.shape[1]
        if self.dim is not None and self.dim != dim:
            raise ValueError(f"dim={self.dim}, but the base model's vectors have {dim} dims")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = self.adapter_model if self.adapter_model is not None else self._new(dim)
            self.history = train_adapter(module, train, val, self._settings())
        training = {
            "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
            "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
            "scale": self.scale, "queries": len(self.train_dataset), "history": self.history,
        }  # fmt: skip
        self._model = AdapterEmbedding(self.base_embed_model, module, dim)
        self._model.save(self.output_dir, training)
        logger.info("adapter saved to %s", self.output_dir)

    def get_finetuned_model(self, adapter_cls: type | None = None, **model_kwargs: Any) -> Any:
        """Return the base model plus the trained adapter, as an :class:`AdapterEmbedding`.

        Without arguments: the adapter this engine trained (or, in a new process, the one in
        ``model_output_path``). ``adapter_cls`` (a ``BaseAdapter`` subclass) loads it from
        ``model_output_path`` with ``adapter_cls.load``, as the reference does; any other
        keyword (``transform_query``, ``embed_batch_size``, ...) returns the library's own
        ``AdapterEmbeddingModel(embed_model, model_output_path, adapter_cls, **model_kwargs)``
        (``adapter_cls`` defaulting to the class this engine trained).
        """
        if model_kwargs:
            from llama_index.embeddings.adapter import AdapterEmbeddingModel

            if adapter_cls is None and self._model is not None:
                adapter_cls = type(self._model.adapter)
            return AdapterEmbeddingModel(
                self.base_embed_model, str(self.output_dir), adapter_cls, **model_kwargs
            )
        if self._model is not None and (adapter_cls is None or isinstance(
            self._model.adapter, adapter_cls
        )):  # fmt: skip
            return self._model
        if (self.output_dir / CONFIG_NAME).is_file() or (self.output_dir / LEGACY_CONFIG).is_file():
            return AdapterEmbedding.from_dir(self.output_dir, self.base_embed_model, adapter_cls)
        raise RuntimeError(f"no adapter yet: call finetune() first (nothing in {self.output_dir})")

    def _new(self, dim: int) -> Any:
        from llama_index.embeddings.adapter import LinearLayer
        from llama_index.embeddings.adapter.utils import TwoLayerNN

        if self.adapter == "linear":
            return LinearLayer(dim, dim, bias=self.bias)
        hidden = self.hidden_dim or 2 * dim
        return TwoLayerNN(dim, hidden, dim, bias=True, add_residual=True)

    def _settings(self) -> TrainSettings:
        checkpoints = self.model_checkpoint_path
        return TrainSettings(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, scale=self.scale, seed=self.seed, device=self.device,
            show_progress=self.show_progress,
            checkpoint_path=None if checkpoints is None else Path(checkpoints),
            checkpoint_save_steps=self.checkpoint_save_steps, **self._optimizer,
        )  # fmt: skip


def _pick_base(embed_model: Any, base_embed_model: Any) -> BaseEmbedding:
    if embed_model is not None and base_embed_model is not None:
        raise TypeError("pass the base model once: embed_model= or base_embed_model=, not both")
    model = embed_model if embed_model is not None else base_embed_model
    if not isinstance(model, BaseEmbedding):
        raise TypeError(
            f"embed_model must be a LlamaIndex BaseEmbedding, got {type(model).__name__}"
        )
    return model


def _check_adapter(adapter: Any, adapter_model: Any) -> Any:
    if adapter not in get_args(AdapterKind):
        raise ValueError(f"adapter must be one of {get_args(AdapterKind)}, got {adapter!r}")
    if adapter_model is None:
        return None
    from llama_index.embeddings.adapter import BaseAdapter

    if not isinstance(adapter_model, BaseAdapter):
        raise TypeError(
            "adapter_model must be a llama-index-embeddings-adapter BaseAdapter (LinearLayer, "
            f"TwoLayerNN or a subclass), got {type(adapter_model).__name__}"
        )
    if adapter != "linear":
        raise ValueError("pass adapter= (a kind) or adapter_model= (a module), not both")
    logger.debug("training the given %s", class_path(type(adapter_model)))
    return adapter_model


def _check_numbers(**values: Any) -> None:
    for name in ("epochs", "batch_size", "num_workers", "checkpoint_save_steps"):
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("learning_rate", "scale", "hidden_dim", "dim"):
        value = values[name]
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


def _optimizer_kwargs(train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The reference's ``train_model`` keywords: optimizer ones used, the others warn."""
    out = {}
    for key, value in train_kwargs.items():
        if key in ("optimizer_class", "optimizer_params"):
            out[key] = value
        elif key in _UNUSED_TRAIN_KWARGS:
            warn_unused(key, _UNUSED_TRAIN_KWARGS[key])
        else:
            raise TypeError(f"EmbeddingAdapterFinetuneEngine got an unexpected keyword {key!r}")
    return out


__all__ = ["AdapterKind", "EmbeddingAdapterFinetuneEngine"]
