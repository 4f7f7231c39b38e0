"""Adapter over a frozen ``BaseEmbedding``: train a small query-side layer, keep document vectors.

The base model (any LlamaIndex ``BaseEmbedding``, an API model included) embeds the training
queries and chunks once; the vectors are cached on disk. A small torch adapter is then trained on
the query side only, so an index built with the base model stays valid: no re-embedding of the
corpus, only queries pass through the adapter.
"""

from __future__ import annotations

import json
import logging
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from llama_index_finetune_embed._embed_cache import (
    EmbeddedDataset,
    EmbeddingCache,
    base_model_identity,
    check_same_base,
)
from llama_index_finetune_embed._io import atomic_open, atomic_write_json, progress_enabled
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate.metrics import mrr_at_k

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

AdapterKind = Literal["linear", "two_layer"]
WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
_FORMAT_VERSION = 1


# -- the adapter module -----------------------------------------------------------------------


def _adapter_module(kind: str, dim: int, hidden_dim: int) -> torch.nn.Module:
    """``x + f(x)`` with ``f``'s last layer zero-initialised: untrained, it is the identity."""
    import torch

    class ResidualAdapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if kind == "linear":
                self.body: torch.nn.Module = torch.nn.Linear(dim, dim)
                last = self.body
            else:
                self.body = torch.nn.Sequential(
                    torch.nn.Linear(dim, hidden_dim),
                    torch.nn.ReLU(),
                    torch.nn.Linear(hidden_dim, dim),
                )
                last = self.body[2]
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x)

    return ResidualAdapter()


def _adapt(module: torch.nn.Module, vectors: np.ndarray) -> np.ndarray:
    """Run query vectors through the adapter, keeping each vector's norm (score scales hold)."""
    import torch

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        y = module(x)
        norm_in = x.norm(dim=-1, keepdim=True)
        y = y * (norm_in / y.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return y.numpy()


class AdapterEmbedding(BaseEmbedding):
    """A ``BaseEmbedding`` that is a frozen base model plus a trained query adapter.

    Queries go through the adapter; document texts are embedded by the base model unchanged, so
    an index built with the base model keeps its vectors: swap in this model for retrieval only
    (``index.as_retriever(embed_model=adapter_model)``) and nothing is re-embedded.

    Example:
        >>> model = AdapterEmbedding.from_dir("adapter_out", base_embed_model)  # doctest: +SKIP
        >>> retriever = index.as_retriever(embed_model=model)  # doctest: +SKIP
    """

    adapter: str = Field(description="adapter kind: linear or two_layer")
    dim: int = Field(gt=0, description="embedding dimension of the base model")
    _base: BaseEmbedding = PrivateAttr()
    _module: Any = PrivateAttr()
    _config: dict[str, Any] = PrivateAttr()

    def __init__(self, base_embed_model: BaseEmbedding, module: Any, config: dict[str, Any]):
        super().__init__(
            model_name=f"adapter({base_embed_model.model_name})",
            embed_batch_size=base_embed_model.embed_batch_size,
            adapter=config["adapter"],
            dim=config["dim"],
        )
        self._base = base_embed_model
        self._module = module.eval()
        self._config = config

    @classmethod
    def class_name(cls) -> str:
        return "AdapterEmbedding"

    @property
    def base_embed_model(self) -> BaseEmbedding:
        """The frozen base model (documents are embedded by it alone)."""
        return self._base

    def adapt_query_embeddings(self, vectors: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Return base-model query vectors ``(n, dim)`` as this model would embed those queries."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"expected query vectors of shape (n, {self.dim}) from the base model "
                f"{self._config['base_model']}, got {array.shape}: is this the base model the "
                f"adapter was trained on?"
            )
        return _adapt(self._module, array)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.adapt_query_embeddings([self._base.get_query_embedding(query)])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        vector = await self._base.aget_query_embedding(query)
        return self.adapt_query_embeddings([vector])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._base.get_text_embedding(text)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._base.aget_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._base.get_text_embedding_batch(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._base.aget_text_embedding_batch(texts)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``adapter.safetensors`` and ``adapter_config.json`` to directory ``path``."""
        from safetensors.torch import save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._module.state_dict().items()}
        with atomic_open(path / WEIGHTS_NAME, "wb") as fh:
            fh.write(save(state))
        atomic_write_json(path / CONFIG_NAME, self._config)
        return path

    @classmethod
    def from_dir(
        cls,
        path: str | os.PathLike[str],
        base_embed_model: BaseEmbedding,
        *,
        check_base_model: bool = True,
    ) -> AdapterEmbedding:
        """Load an adapter saved by :meth:`save` (or by the engine) on top of ``base_embed_model``.

        Raises:
            FileNotFoundError: ``path`` holds no saved adapter.
            ValueError: the adapter was trained on another base model (name, class or
                instructions differ); pass ``check_base_model=False`` to load it anyway.

        Example:
            >>> model = AdapterEmbedding.from_dir("adapter_out", base_embed_model)  # doctest: +SKIP
        """
        from safetensors.torch import load

        path = Path(path)
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"no saved adapter in {path} (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            )
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        if config.get("adapter") not in get_args(AdapterKind) or not config.get("dim"):
            raise ValueError(f"{path / CONFIG_NAME} is not an adapter config written by save()")
        if check_base_model:
            check_same_base(
                config.get("base_model", {}), base_model_identity(base_embed_model), path
            )
        module = _adapter_module(config["adapter"], config["dim"], config.get("hidden_dim") or 0)
        try:
            module.load_state_dict(load((path / WEIGHTS_NAME).read_bytes()))
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"{path / WEIGHTS_NAME} does not match {CONFIG_NAME}: {exc}") from None
        return cls(base_embed_model, module, config)


# -- the engine -------------------------------------------------------------------------------


class EmbeddingAdapterFinetuneEngine:
    """Trains a query-side adapter over a frozen base model; gives back an ``AdapterEmbedding``.

    The base model embeds every training query and chunk once (cached in ``cache_dir``, so a
    rerun calls it for nothing already seen: API models are not billed twice). The adapter is
    ``x + f(x)`` with ``f`` a linear layer (``"linear"``) or a ReLU MLP (``"two_layer"``), started
    at zero so the untrained adapter is the base model. It is trained with in-batch negatives:
    cross-entropy over ``scale`` x cosine(adapted query, chunk), with a query's other relevant
    chunks masked out rather than used as negatives. Only queries pass through the adapter, so an
    index built with the base model stays valid.

    Args:
        train_dataset: (query, chunk) pairs; llama-index-finetuning's dataset works too.
        base_embed_model: any LlamaIndex ``BaseEmbedding`` (HuggingFace, OpenAI, ...); frozen.
        adapter: ``"linear"`` (dim x dim) or ``"two_layer"`` (dim -> hidden_dim -> dim).
        model_output_path: where the trained adapter is saved.
        cache_dir: embedding cache (default ``model_output_path/embedding_cache``).
        epochs, batch_size, learning_rate, weight_decay: AdamW settings. The defaults were
            picked on a held-out 25% of the Lyft seed questions with MiniLM; AdamW's decay
            pulls the residual towards zero, i.e. the adapter towards the base model.
        scale: inverse temperature of the cosine similarities (20 = sentence-transformers' MNRL).
        hidden_dim: width of the two-layer adapter (default 2 x dim).
        seed: seeds initialisation and shuffling (the caller's torch RNG state is left alone).
        val_dataset: if given, MRR@10 on it is logged per epoch and the best epoch is kept
            (epoch 0, the base model, included: the adapter never ends worse on it).
        num_workers: threads embedding queries for models without a batch query call (API).
            ``query_workers=`` is its deprecated old name.
        show_progress: tqdm bars while embedding and training (None: when logging shows INFO).

    Example:
        >>> engine = EmbeddingAdapterFinetuneEngine(train_ds, OpenAIEmbedding())  # doctest: +SKIP
        >>> engine.finetune()  # doctest: +SKIP
        >>> embed_model = engine.get_finetuned_model()  # doctest: +SKIP
        >>> retriever = index.as_retriever(embed_model=embed_model)  # same index  # doctest: +SKIP
    """

    def __init__(
        self,
        train_dataset: EmbeddingQAFinetuneDataset,
        base_embed_model: BaseEmbedding,
        *,
        adapter: AdapterKind = "linear",
        model_output_path: str | os.PathLike[str] = "adapter_out",
        cache_dir: str | os.PathLike[str] | None = None,
        epochs: int = 20,
        batch_size: int = 32,
        learning_rate: float = 3e-4,
        weight_decay: float = 1.0,
        scale: float = 20.0,
        hidden_dim: int | None = None,
        seed: int = 0,
        val_dataset: EmbeddingQAFinetuneDataset | None = None,
        num_workers: int = 1,
        show_progress: bool | None = None,
        query_workers: int | None = None,
    ) -> None:
        if query_workers is not None:
            warnings.warn(
                "query_workers= is deprecated: use num_workers=", DeprecationWarning, stacklevel=2
            )
            num_workers = query_workers
        self.train_dataset = EmbeddingQAFinetuneDataset.coerce(train_dataset, "train_dataset")
        self.val_dataset = (
            None if val_dataset is None
            else EmbeddingQAFinetuneDataset.coerce(val_dataset, "val_dataset")
        )
        if not isinstance(base_embed_model, BaseEmbedding):
            raise TypeError(
                "base_embed_model must be a LlamaIndex BaseEmbedding, "
                f"got {type(base_embed_model).__name__}"
            )
        if adapter not in get_args(AdapterKind):
            raise ValueError(f"adapter must be one of {get_args(AdapterKind)}, got {adapter!r}")
        for name, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("num_workers", num_workers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (
            ("learning_rate", learning_rate),
            ("scale", scale),
            ("hidden_dim", 1 if hidden_dim is None else hidden_dim),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.base_embed_model = base_embed_model
        self.adapter, self.epochs, self.batch_size = adapter, epochs, batch_size
        self.learning_rate, self.weight_decay, self.scale = learning_rate, weight_decay, scale
        self.hidden_dim, self.seed = hidden_dim, seed
        self.show_progress = progress_enabled(show_progress, logger)
        self.model_output_path = Path(model_output_path)
        self.cache = EmbeddingCache(
            cache_dir if cache_dir is not None else self.model_output_path / "embedding_cache",
            base_embed_model,
            num_workers=num_workers,
        )
        self.history: list[dict[str, float]] = []
        self._model: AdapterEmbedding | None = None

    def finetune(self) -> None:
        """Embed the datasets (cached), train the adapter, save it to ``model_output_path``."""
        import torch

        train = EmbeddedDataset(self.cache, self.train_dataset, self.show_progress)
        val = (
            None
            if self.val_dataset is None
            else EmbeddedDataset(self.cache, self.val_dataset, self.show_progress)
        )
        logger.info(
            "base model embedded %d new texts (the rest came from %s)",
            self.cache.computed,
            self.cache.path,
        )
        dim = train.queries.shape[1]
        hidden = (self.hidden_dim or 2 * dim) if self.adapter == "two_layer" else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = _adapter_module(self.adapter, dim, hidden or 0)
            self.history = self._train(module, train, val)
        config = {
            "format_version": _FORMAT_VERSION,
            "adapter": self.adapter,
            "dim": dim,
            "hidden_dim": hidden,
            "base_model": base_model_identity(self.base_embed_model),
            "training": {
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "scale": self.scale, "seed": self.seed, "queries": len(self.train_dataset),
                "history": self.history,
            },
        }  # fmt: skip
        self._model = AdapterEmbedding(self.base_embed_model, module, config)
        self._model.save(self.model_output_path)
        logger.info("adapter saved to %s", self.model_output_path)

    def get_finetuned_model(self) -> AdapterEmbedding:
        """Return the base model plus the trained adapter (loaded from ``model_output_path``
        when this engine has not trained one itself)."""
        if self._model is not None:
            return self._model
        if (self.model_output_path / CONFIG_NAME).is_file():
            return AdapterEmbedding.from_dir(self.model_output_path, self.base_embed_model)
        raise RuntimeError(
            f"no adapter yet: call finetune() first (nothing in {self.model_output_path})"
        )

    def _train(
        self, module: torch.nn.Module, train: EmbeddedDataset, val: EmbeddedDataset | None
    ) -> list[dict[str, float]]:
        import torch

        queries, docs = (
            torch.as_tensor(train.queries),
            torch.nn.functional.normalize(torch.as_tensor(train.docs), dim=-1),
        )
        pairs = [(qi, di) for qi, rel in enumerate(train.relevant) for di in sorted(rel)]
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        rng = random.Random(self.seed)
        history: list[dict[str, float]] = []
        best = (self._val_mrr(module, val), 0, _state_copy(module)) if val else None
        epochs = range(1, self.epochs + 1)
        if self.show_progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="Training adapter")
        for epoch in epochs:
            rng.shuffle(pairs)
            module.train()
            losses = [
                self._step(
                    module, optimizer, queries, docs, train.relevant, pairs[i : i + self.batch_size]
                )
                for i in range(0, len(pairs), self.batch_size)
            ]
            record = {"epoch": epoch, "loss": float(np.mean(losses))}
            if val is not None and best is not None:
                record["val_mrr@10"] = self._val_mrr(module, val)
                if record["val_mrr@10"] > best[0]:
                    best = (record["val_mrr@10"], epoch, _state_copy(module))
            logger.info("adapter epoch %s", record)
            history.append(record)
        module.eval()
        if best is not None:
            module.load_state_dict(best[2])
            logger.info("kept epoch %d (val MRR@10 %.4f)", best[1], best[0])
        return history

    def _step(
        self,
        module: Any,
        optimizer: Any,
        queries: Any,
        docs: Any,
        relevant: list[set[int]],
        batch: list[tuple[int, int]],
    ) -> float:
        import torch

        qi = torch.tensor([q for q, _ in batch])
        di = [d for _, d in batch]
        adapted = torch.nn.functional.normalize(module(queries[qi]), dim=-1)
        logits = adapted @ docs[di].T * self.scale
        # another row's chunk that is also relevant to this query is no negative
        mask = torch.tensor(
            [
                [a != b and d in relevant[q] for b, d in enumerate(di)]
                for a, (q, _) in enumerate(batch)
            ]
        )
        logits = logits.masked_fill(mask, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @staticmethod
    def _val_mrr(module: Any, val: EmbeddedDataset | None) -> float:
        assert val is not None
        module.eval()
        return mrr_at_k(_adapt(module, val.queries), val.docs, val.relevant, k=10)


def _state_copy(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
