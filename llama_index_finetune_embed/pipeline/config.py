"""RunConfig: the settings of one ``finetune-embed run``, each with its default and help.

Imports nothing else of the package, so the CLI can build its options from it cheaply.
"""

from __future__ import annotations

from typing import Literal

from llama_index.core.bridge.pydantic import BaseModel, Field

#: The packaged all-MiniLM-L6-v2 (``embeddings.LOCAL_MINILM``, written out to import nothing).
LOCAL_MINILM = "local:all-MiniLM-L6-v2"


class RunConfig(BaseModel):
    """Settings of one ``finetune-embed run``; every field has an offline-friendly default.

    The CLI builds its options from these fields (flag ``--chunk-size`` for ``chunk_size``, type,
    default, choices and help from the field), so a default is written here only.

    Example:
        >>> RunConfig(out="runs/demo", max_chunks=200).llm
        'auto'
    """

    docs: list[str] = Field(
        default_factory=list, description="files/folders; empty = stdlib topics"
    )
    out: str = Field(description="output directory; reruns resume from what is there")
    from_index: str | None = Field(
        default=None,
        description="finetune on an existing index's chunks as they are (no re-chunking): a "
        "LlamaIndex persist dir whose docstore holds the nodes",
    )
    from_store: str | None = Field(
        default=None,
        description="finetune on the chunks a vector store holds: postgresql://USER@HOST:PORT/DB"
        "?table=NAME, qdrant:PATH?collection=NAME, qdrant+http://HOST:PORT?collection=NAME or "
        "chroma:PATH?collection=NAME (a password from the environment, e.g. PGPASSWORD)",
    )
    current_model: str | None = Field(
        default=None,
        description="the embed model your index uses today (model id or path, local:..., "
        "openai:text-embedding-3-small): the report's first row, the one to beat; scored on the "
        "source's own vectors where it holds that model's (unset: the base as LlamaIndex loads it)",
    )
    to_store: str | None = Field(
        default=None,
        description="write the index the report chose into this new table or collection (same "
        "URL forms as --from-store; never one that exists and was not written by this --out)",
    )
    llm: str = Field(
        default="auto",
        description="auto (OpenAI if OPENAI_API_KEY is set, else local), local, none, openai:MODEL",
    )
    base_model: str = Field(
        default=LOCAL_MINILM,
        description="model id or path, e.g. BAAI/bge-small-en-v1.5 (default: the packaged "
        "all-MiniLM-L6-v2)",
    )
    chunk_size: int = Field(default=512, gt=16, description="tokens per chunk")
    chunk_overlap: int = Field(default=64, ge=0, description="token overlap between chunks")
    max_chunks: int | None = Field(
        default=None, gt=1, description="sample at most this many chunks (unset: all)"
    )
    max_train_chunks: int = Field(
        default=1000,
        gt=1,
        description="offline: pseudo-queries from at most this many training chunks, sampled "
        "(more trains longer and forgot more on questions people wrote; see docs/offline.md)",
    )
    max_val_chunks: int = Field(
        default=400,
        gt=1,
        description="held-out questions are written for at most this many held-out chunks, "
        "sampled; the report still ranks every held-out chunk (400 chunks: ~500 offline questions, "
        "about +-2.8 NDCG@10 points at 95 percent confidence; see docs/scale.md)",
    )
    questions_per_chunk: int = Field(default=2, gt=0, description="questions asked per chunk")
    val_ratio: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="share of chunks held out for the report"
    )
    epochs: int | None = Field(
        default=None, gt=0, description="training epochs (unset: the recipe's)"
    )
    batch_size: int | None = Field(
        default=None, gt=1, description="chunks per training batch (unset: the recipe's)"
    )
    max_seq_length: int | None = Field(
        default=None, gt=8, description="tokens per text (unset: the model's maximum)"
    )
    base_weight: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="base share of the averaged weights, 0 = as trained (unset: the recipe's 0.5)",
    )
    guard: bool = Field(
        default=True,
        description="check the model against its base and hand back the better "
        "(see docs/guide.md)",
    )
    top_k: int = Field(default=5, gt=0, description="retrieval depth for the report")
    num_workers: int = Field(
        default=128, gt=0, description="most LLM calls in flight (reached while the API keeps up)"
    )
    max_rpm: float | None = Field(
        default=None, gt=0, description="API requests per minute to stay under (unset: learned)"
    )
    max_tpm: float | None = Field(
        default=None, gt=0, description="API tokens per minute to stay under (unset: learned)"
    )
    max_calls: int | None = Field(
        default=None, gt=0, description="budget: API calls at most; a rerun continues"
    )
    budget_tokens: int | None = Field(
        default=None, gt=0, description="budget: API tokens at most; a rerun continues"
    )
    offline_train: Literal["mix", "pseudo"] = Field(
        default="pseudo",
        description="offline training pairs: inverse-cloze pseudo-queries (pseudo, measured "
        "best) or local-LLM questions + pseudo-queries (mix)",
    )
    seed: int = Field(default=0, description="seed of sampling, splitting and training")
    embed_on: Literal["local", "ray"] = Field(
        default="local",
        description="where the report's and the index's chunks are embedded: this process, or "
        "actors on the Ray cluster ray.init() joins (the ray extra; see docs/scale.md)",
    )
