"""Adapters on a frozen ``BaseEmbedding``: train a small query-side layer, keep document vectors.

The base model (any LlamaIndex ``BaseEmbedding``, an API model included) embeds the training
queries and chunks once; the vectors are cached on disk. A llama-index-embeddings-adapter module
(``LinearLayer``, ``TwoLayerNN`` or your ``BaseAdapter``) is then trained on the query side
only, so an index built with the base model stays valid: no re-embedding of the corpus.

Modules: ``engine`` (the engine), ``model`` (:class:`AdapterEmbedding`, saving and loading),
``train`` (the training loop). Imports no torch.
"""

from llama_index_finetune_embed.adapter.engine import AdapterKind, EmbeddingAdapterFinetuneEngine
from llama_index_finetune_embed.adapter.model import AdapterEmbedding

__all__ = ["AdapterEmbedding", "AdapterKind", "EmbeddingAdapterFinetuneEngine"]
