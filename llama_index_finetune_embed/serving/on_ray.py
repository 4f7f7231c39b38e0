"""Embedding an index's texts on a Ray cluster: the model on actors, one per GPU or CPU slot.

``build_window_index(nodes, embed_model, embed_with=RayEmbedder.of(embed_model))`` cuts the
chunks into windows here, embeds the windows with Ray Data (``map_batches`` over actors that each
load the model once) and writes the vectors to the index's vector store (any LlamaIndex store)
from this process; queries are embedded here by ``embed_model``. Needs the ``ray`` extra
(``pip install 'llama-index-finetune-embed[ray]'``) and a model every node can load (a path on a
shared file system, or a hub id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RayEmbedder:
    """Embeds document texts on Ray actors, exactly as ``load_embed_model(model_id, **kwargs)``.

    ``num_actors``: actors (default: one per GPU when ``num_gpus`` > 0, else as many as Ray's
    CPUs allow at ``num_cpus`` each); ``batch_size``: texts per ``map_batches`` batch.

    Example:
        >>> import ray; ray.init()  # doctest: +SKIP
        >>> ray_model = RayEmbedder.of(model)  # doctest: +SKIP
        >>> index = build_window_index(nodes, model, embed_with=ray_model)  # doctest: +SKIP
    """

    model_id: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_actors: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 256

    @classmethod
    def of(cls, embed_model: Any, **options: Any) -> RayEmbedder:
        """The embedder for a ``HuggingFaceEmbedding`` (its path or hub id, prompts, length,
        normalization and weight format), so Ray's vectors are the model's own."""
        import importlib.util

        from llama_index_finetune_embed.embeddings import is_hf_embedding, precision_of

        if importlib.util.find_spec("ray") is None:
            raise ImportError(
                "embedding on Ray needs Ray Data: pip install 'llama-index-finetune-embed[ray]'"
            )
        if not is_hf_embedding(embed_model):
            raise ValueError(
                f"RayEmbedder.of needs a HuggingFaceEmbedding (a model Ray workers can load), "
                f"got {type(embed_model).__name__}"
            )
        kwargs = {
            "query_instruction": embed_model.query_instruction,
            "text_instruction": embed_model.text_instruction,
            "max_length": embed_model.max_length,
            "normalize": embed_model.normalize,
            "precision": precision_of(embed_model),
        }
        return cls(str(embed_model.model_name), kwargs, **options)

    def __call__(self, texts: list[str]) -> list[list[float]]:
        """Vectors of ``texts`` (document side), in order."""
        import ray

        if not texts:
            return []
        if not ray.is_initialized():
            ray.init()
        data = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        actors = self.num_actors or self._default_actors(ray)
        vectors = data.map_batches(
            _Embed,
            fn_constructor_args=(self.model_id, self.model_kwargs),
            batch_size=self.batch_size,
            batch_format="numpy",
            concurrency=actors,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
        )
        out: list[Any] = [None] * len(texts)
        for batch in vectors.iter_batches(batch_format="numpy", batch_size=None):
            for i, vector in zip(batch["i"], batch["vector"], strict=True):
                out[int(i)] = vector.tolist()
        return out

    def _default_actors(self, ray: Any) -> int:
        resources = ray.cluster_resources()
        if self.num_gpus > 0:
            return max(1, int(resources.get("GPU", 0) // self.num_gpus))
        return max(1, int(resources.get("CPU", 1) // max(self.num_cpus, 1e-9)))


class _Embed:
    """A Ray actor: loads the model once, embeds batches of ``{"i", "text"}``."""

    def __init__(self, model_id: str, model_kwargs: dict[str, Any]) -> None:
        from llama_index_finetune_embed.embeddings import load_embed_model

        self.model = load_embed_model(model_id, **model_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort([-len(t) for t in batch["text"]], kind="stable")  # less padding
        vectors = self.model.get_text_embedding_batch([str(batch["text"][k]) for k in order])
        out = np.empty((len(order), len(vectors[0])), dtype=np.float64)
        out[order] = vectors
        return {"i": batch["i"], "vector": out}


def ray_embedder(embed_model: Any, embed_on: str) -> RayEmbedder | None:
    """``RayEmbedder.of(embed_model)`` where ``embed_on`` is ``"ray"`` and the model is one Ray
    workers can load (a ``HuggingFaceEmbedding``); ``None`` (embed in this process) otherwise."""
    from llama_index_finetune_embed.embeddings import is_hf_embedding

    if embed_on != "ray" or not is_hf_embedding(embed_model):
        return None
    return RayEmbedder.of(embed_model)
