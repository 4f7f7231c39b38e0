"""The model the user's index uses today (``--current-model``): the report's first row.

The row is scored on the source index's own vectors where it holds that model's (only the
questions are embedded: judging what the user runs today costs no re-embedding of the corpus),
else on the held-out chunks embedded exactly as LlamaIndex embeds with that model. Whether the
stored vectors are that model's is checked, not assumed: the same dimension, and a few chunks
embedded again must point the same way (cosine >= :data:`SAME_VECTOR`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from llama_index_finetune_embed.pipeline.stages.chunks import check_source
from llama_index_finetune_embed.pipeline.stages.job import Job

logger = logging.getLogger("llama_index_finetune_embed.pipeline")

#: Cosine above which a stored vector is taken for the model's own (float32 storage, another
#: batch size or device: ~0.9999; another model or prompt: far lower).
SAME_VECTOR = 0.99
#: Chunks embedded again to check that the stored vectors are the model's.
CHECKED_CHUNKS = 8


def current_row(config: Any) -> str | None:
    """The first row's name (None without ``--current-model``)."""
    return f"today: {config.current_model}" if config.current_model else None


def current_results(
    job: Job, val: Any, canary: Any, caches: tuple[Any, Any] = (None, None)
) -> tuple[Any, Any, str]:
    """(held-out result, canary result, how the held-out row was scored, in words); ``caches``:
    the vector caches of the held-out set and the canary."""
    from llama_index_finetune_embed.embeddings import load_any_embed_model
    from llama_index_finetune_embed.evaluate import RetrievalEvaluator

    config, name = job.config, current_row(job.config)
    model = load_any_embed_model(config.current_model)
    options = {"top_k": config.top_k, "seed": config.seed}
    evaluator = RetrievalEvaluator(val, show_progress=True, vector_cache=caches[0], **options)
    vectors, why = _stored_vectors(job, val, model, caches[0])
    if vectors is not None:
        held_out = evaluator.score_stored(model, vectors, name=name)
        how = "scored on the vectors the source index holds, only the questions embedded"
    else:
        held_out = evaluator(model, name=name)
        how = f"the held-out chunks embedded as LlamaIndex embeds with it{why}"
    canary_result = RetrievalEvaluator(canary, vector_cache=caches[1], **options)(model, name=name)
    return held_out, canary_result, how


def _stored_vectors(
    job: Job, val: Any, model: Any, cache: Any = None
) -> tuple[dict[str, Any] | None, str]:
    """The source's vectors of the held-out chunks when they are ``model``'s, else
    ``(None, why not)``."""
    source = check_source(job.config)
    if source is None:
        return None, ""
    from llama_index_finetune_embed.serving import stored_vectors

    vectors = stored_vectors(source, val.corpus)
    missing = len(val.corpus) - len(vectors)
    if missing:
        return None, f" ({missing} held-out chunks have no vector in the source)"
    dim = len(model.get_query_embedding("dimension"))
    have = len(next(iter(vectors.values()))[0])
    if have != dim:
        return None, f" (the source's vectors have dimension {have}, the model's {dim})"
    cosine = _agreement(vectors, val.corpus, model, cache)
    if cosine is not None and cosine < SAME_VECTOR:
        logger.warning(
            "the source's vectors are not %s's as LlamaIndex embeds with it (cosine %.3f on %d "
            "chunks embedded again): the first row embeds the held-out chunks itself",
            job.config.current_model, cosine, CHECKED_CHUNKS,
        )  # fmt: skip
        return None, f" (the source's vectors are another model's: cosine {cosine:.3f})"
    return vectors, ""


def _agreement(
    vectors: dict[str, Any], corpus: dict[str, str], model: Any, cache: Any = None
) -> float | None:
    """The lowest cosine between stored and fresh vectors of a few one-vector chunks (None when
    every chunk is stored as windows); fresh through ``cache`` when given (the base's rows read
    them back where the base is the model)."""
    ids = [cid for cid in sorted(vectors) if len(vectors[cid]) == 1][:CHECKED_CHUNKS]
    if not ids:
        return None
    embed = model.get_text_embedding_batch if cache is None else cache.embedder(model)
    fresh = np.asarray(embed([corpus[i] for i in ids]), np.float64)
    stored = np.asarray([vectors[i][0] for i in ids], np.float64)
    norms = np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1)
    return float(np.min(np.sum(fresh * stored, axis=1) / np.maximum(norms, 1e-12)))


def current_model_bill(config: Any, val_nodes: Any, asked: Any) -> tuple[list[str], float]:
    """The dry run's lines for an API ``--current-model`` and their cost (0.0 when it is not
    an API model): the held-out questions (at most ``questions_per_chunk`` per asked chunk),
    the canary, and the held-out chunks unless the source holds their vectors."""
    spec = str(config.current_model or "")
    if not spec.startswith("openai:"):
        return [], 0.0
    from llama_index.core.schema import MetadataMode

    from llama_index_finetune_embed.finetune import load_canary
    from llama_index_finetune_embed.generate import estimate_embeddings

    canary = load_canary()
    documents = list(canary.corpus.values())
    stored = check_source(config) is not None
    if not stored:
        documents += [n.get_content(metadata_mode=MetadataMode.EMBED) for n in val_nodes]
    queries = ["?" * 60] * (config.questions_per_chunk * len(asked)) + list(canary.queries.values())
    estimate = estimate_embeddings(spec.split(":", 1)[1], documents, queries)
    where = ("the held-out chunks' vectors read from the source, if they are this model's"
             if stored else f"{len(val_nodes)} held-out chunks embedded")  # fmt: skip
    lines = [
        f"current model (the report's first row; {where}; the held-out questions at most "
        f"{config.questions_per_chunk} per asked chunk; the canary):",
        *(f"  {line}" for line in estimate.lines()),
    ]
    return lines, estimate.cost_usd or 0.0
