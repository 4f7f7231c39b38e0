"""Serving long chunks: windows that fit the embed model in, whole chunks out (best window).

``build_window_index(nodes, embed_model)`` returns a ``VectorStoreIndex`` whose retrievers and
query engines return the original chunks scored by their best window; ``load_window_index``
loads one back. Modules: ``windows`` (cutting chunks to the model's window), ``index`` (the
index, its retriever, persistence), ``on_ray`` (embedding on a Ray cluster), ``stores`` (vector
stores named by URL: PostgreSQL + pgvector, Qdrant, Chroma; an existing index's chunks read
out), ``writing`` (a window index written into a store in batches, resumable).
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
from llama_index_finetune_embed.serving.stores import (
    Store,
    StoreURL,
    index_nodes,
    open_store,
    parse_store_url,
    stored_vectors,
)
from llama_index_finetune_embed.serving.windows import (
    WindowSplitter,
    tokenizer_splitter,
    window_splitter,
)
from llama_index_finetune_embed.serving.writing import (
    WriteStats,
    recorded_store,
    write_window_index,
)

__all__ = [
    "CONFIG_NAME",
    "LongChunks",
    "RayEmbedder",
    "Store",
    "StoreURL",
    "ray_embedder",
    "WindowIndex",
    "WindowRetriever",
    "WindowSplitter",
    "WriteStats",
    "build_window_index",
    "index_nodes",
    "load_window_index",
    "open_store",
    "parse_store_url",
    "recorded_store",
    "stored_vectors",
    "tokenizer_splitter",
    "window_splitter",
    "write_window_index",
]
