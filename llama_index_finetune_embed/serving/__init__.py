"""Serving long chunks: windows that fit the embed model in, whole chunks out (best window).

``build_window_index(nodes, embed_model)`` returns a ``VectorStoreIndex`` whose retrievers and
query engines return the original chunks scored by their best window; ``load_window_index``
loads one back. Modules: ``windows`` (cutting chunks to the model's window), ``index`` (the
index, its retriever, persistence), ``on_ray`` (embedding on a Ray cluster).
"""

from llama_index_finetune_embed.serving.index import (
    CONFIG_NAME,
    LongChunks,
    WindowIndex,
    WindowRetriever,
    build_window_index,
    load_window_index,
)
from llama_index_finetune_embed.serving.on_ray import RayEmbedder, ray_embedder
from llama_index_finetune_embed.serving.windows import (
    WindowSplitter,
    tokenizer_splitter,
    window_splitter,
)

__all__ = [
    "CONFIG_NAME",
    "LongChunks",
    "RayEmbedder",
    "ray_embedder",
    "WindowIndex",
    "WindowRetriever",
    "WindowSplitter",
    "build_window_index",
    "load_window_index",
    "tokenizer_splitter",
    "window_splitter",
]
