"""AdapterEmbedding: a frozen ``BaseEmbedding`` plus a trained adapter module.

The saved format is llama-index-embeddings-adapter's own (``BaseAdapter.save``: ``config.json``
with the adapter's constructor arguments and ``pytorch_model.bin`` with its weights), so
``AdapterEmbeddingModel(base, path, adapter_cls)`` loads what the engine saves and embeds queries
exactly as :class:`AdapterEmbedding` does. Next to it, ``adapter_training.json`` (ours, ignored
there) records the base model, the adapter class and the training history. Adapters saved by
0.1 of this package (``adapter_config.json`` + ``adapter.safetensors``) still load, converted to
the same function on the library's classes.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from llama_index_finetune_embed._io import atomic_write_json
from llama_index_finetune_embed.adapter._embed_cache import base_model_identity, check_same_base

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"  # llama-index-embeddings-adapter's BaseAdapter.save
WEIGHTS_NAME = "pytorch_model.bin"
TRAINING_NAME = "adapter_training.json"  # ours
LEGACY_CONFIG, LEGACY_WEIGHTS = "adapter_config.json", "adapter.safetensors"  # 0.1's format


class AdapterEmbedding(BaseEmbedding):
    """A ``BaseEmbedding`` that is a frozen base model plus a trained query adapter.

    A query's vector is ``adapter(base query vector)``, computed as llama-index-embeddings-
    adapter's ``AdapterEmbeddingModel`` computes it; document texts are embedded by the base
    model unchanged, so an index built with the base model keeps its vectors: swap this model in
    for retrieval only (``index.as_retriever(embed_model=model)``) and nothing is re-embedded.

    Example:
        >>> model = AdapterEmbedding.from_dir("adapter_out", base_embed_model)  # doctest: +SKIP
        >>> retriever = index.as_retriever(embed_model=model)  # doctest: +SKIP
    """

    adapter_class: str = Field(description="module:qualname of the adapter (a BaseAdapter)")
    dim: int = Field(gt=0, description="embedding dimension of the base model")
    _base: BaseEmbedding = PrivateAttr()
    _module: Any = PrivateAttr()
    _identity: dict[str, Any] = PrivateAttr()

    def __init__(
        self, base_embed_model: BaseEmbedding, adapter: Any, dim: int, **kwargs: Any
    ) -> None:
        super().__init__(
            model_name=f"Adapter for {base_embed_model.model_name}",
            embed_batch_size=base_embed_model.embed_batch_size,
            adapter_class=class_path(type(adapter)), dim=dim, **kwargs,
        )  # fmt: skip
        self._base = base_embed_model
        self._module = adapter.cpu().eval()
        self._identity = base_model_identity(base_embed_model)

    @classmethod
    def class_name(cls) -> str:
        return "AdapterEmbedding"

    @property
    def base_embed_model(self) -> BaseEmbedding:
        """The frozen base model (documents are embedded by it alone)."""
        return self._base

    @property
    def adapter(self) -> Any:
        """The adapter module (a llama-index-embeddings-adapter ``BaseAdapter``)."""
        return self._module

    def adapt_query_embeddings(self, vectors: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Return base-model query vectors ``(n, dim)`` as this model would embed those queries."""
        import torch

        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"expected query vectors of shape (n, {self.dim}) from the base model "
                f"{self._identity}, got {array.shape}: is this the base model the adapter was "
                "trained on?"
            )
        with torch.no_grad():
            return self._module(torch.from_numpy(array)).numpy()

    def _adapt_one(self, vector: list[float]) -> Embedding:
        import torch

        with torch.no_grad():  # as AdapterEmbeddingModel: one 1-D tensor through forward()
            return self._module.forward(torch.tensor(vector)).tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._adapt_one(self._base.get_query_embedding(query))

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._adapt_one(await self._base.aget_query_embedding(query))

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._base.get_text_embedding(text)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._base.aget_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._base.get_text_embedding_batch(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._base.aget_text_embedding_batch(texts)

    def save(self, path: str | os.PathLike[str], training: dict[str, Any] | None = None) -> Path:
        """Write the adapter in llama-index-embeddings-adapter's format, plus our record."""
        path = Path(path)
        self._module.save(str(path))  # BaseAdapter.save: config.json + pytorch_model.bin
        record = {"adapter_class": self.adapter_class, "dim": self.dim,
                  "base_model": self._identity, "training": training or {}}  # fmt: skip
        atomic_write_json(path / TRAINING_NAME, record)
        return path

    @classmethod
    def from_dir(
        cls,
        path: str | os.PathLike[str],
        base_embed_model: BaseEmbedding,
        adapter_cls: type | None = None,
        *,
        check_base_model: bool = True,
    ) -> AdapterEmbedding:
        """Load an adapter saved by the engine (or by llama-index-finetuning) over a base model.

        Args:
            path: the directory (``config.json`` + ``pytorch_model.bin``; 0.1's format loads too).
            base_embed_model: the base model the adapter was trained on.
            adapter_cls: the ``BaseAdapter`` subclass; default: the one recorded at training
                when it can be imported, else ``LinearLayer`` (as ``AdapterEmbeddingModel``).
            check_base_model: refuse an adapter trained on another base model.

        Raises:
            FileNotFoundError: ``path`` holds no saved adapter.
            ValueError: the adapter was trained on another base model (name, class or
                instructions differ); pass ``check_base_model=False`` to load it anyway.

        Example:
            >>> model = AdapterEmbedding.from_dir("adapter_out", base_embed_model)  # doctest: +SKIP
        """
        path = Path(path)
        if (path / LEGACY_CONFIG).is_file() and not (path / CONFIG_NAME).is_file():
            module, record = _load_legacy(path)
        elif (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
            record = _read_json(path / TRAINING_NAME) if (path / TRAINING_NAME).is_file() else {}
            module = (adapter_cls or _recorded_class(record)).load(str(path))
        else:
            raise FileNotFoundError(
                f"no saved adapter in {path} (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            )
        if check_base_model and record.get("base_model"):
            check_same_base(record["base_model"], base_model_identity(base_embed_model), path)
        return cls(base_embed_model, module, _in_features(module))


def class_path(cls: type) -> str:
    """``module:qualname`` of a class, to find it again when loading."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _recorded_class(record: dict[str, Any]) -> type:
    from llama_index.embeddings.adapter import LinearLayer

    recorded = record.get("adapter_class")
    if not recorded or recorded == class_path(LinearLayer):
        return LinearLayer
    module, _, name = recorded.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise ValueError(
            f"the adapter was trained as {recorded}, which cannot be imported here: pass "
            "adapter_cls= (the BaseAdapter subclass it was saved from)"
        ) from None
    return found


def _in_features(module: Any) -> int:
    dim = getattr(module, "in_features", None) or module.get_config_dict().get("in_features")
    if not isinstance(dim, int):
        raise ValueError(f"{type(module).__name__} has no in_features: cannot tell its dimension")
    return dim


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_legacy(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """0.1's ``x + f(x)`` adapters, rebuilt as the same function on the library's classes.

    0.1 also rescaled each adapted vector to its input's norm; cosine rankings are unchanged.
    """
    import torch
    from llama_index.embeddings.adapter import LinearLayer
    from llama_index.embeddings.adapter.utils import TwoLayerNN
    from safetensors.torch import load_file

    config = _read_json(path / LEGACY_CONFIG)
    kind, dim, state = config.get("adapter"), config.get("dim"), load_file(path / LEGACY_WEIGHTS)
    with torch.no_grad():
        if kind == "linear":
            module: Any = LinearLayer(dim, dim, bias=True)
            module.linear.weight.copy_(torch.eye(dim) + state["body.weight"])
            module.linear.bias.copy_(state["body.bias"])
        elif kind == "two_layer":
            module = TwoLayerNN(dim, config["hidden_dim"], dim, bias=True, add_residual=True)
            module.linear1.load_state_dict({k[7:]: v for k, v in state.items() if "body.0." in k})
            module.linear2.load_state_dict({k[7:]: v for k, v in state.items() if "body.2." in k})
            module.residual_weight.fill_(1.0)
        else:
            raise ValueError(f"{path / LEGACY_CONFIG} is not an adapter config written by 0.1")
    warnings.warn(
        f"{path} holds an adapter in this package's 0.1 format; loaded as {type(module).__name__}"
        ". Save it again (model.save(path)) to write llama-index-embeddings-adapter's format",
        UserWarning,
        stacklevel=3,
    )
    return module, {"base_model": config.get("base_model", {})}


__all__ = ["AdapterEmbedding", "class_path"]
