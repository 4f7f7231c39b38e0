"""Dataset + embed model (or retriever) -> retrieval metrics with bootstrap intervals, per query.

:class:`RetrievalEvaluator` holds the dataset and the settings, checked once; call it with each
model (sentence-transformers' ``Evaluator(...)(model)`` shape). The public functions below are
thin forms of it and take the same settings.

Two paths give identical rankings and metric values: the **fast path** (:mod:`.fast`; an embed
model: embed once, rank by cosine in blocks, also sentence-transformers' IR metrics) and the
**retriever path** (:mod:`.retriever`; ``VectorStoreIndex`` + LlamaIndex's ``RetrieverEvaluator``
query by query; also any retriever or index you pass in). A query whose retriever returns nothing
scores 0 on every metric (core's metric classes raise: llama_index issue #13926). With exact
cosine ties the fast path orders tied ids by corpus id, SimpleVectorStore arbitrarily.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from llama_index_finetune_embed._io import progress_enabled
from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate import fast, metrics
from llama_index_finetune_embed.evaluate.fast import (
    DatasetEmbeddings,
    model_label,
    resolve_embed_model,
)
from llama_index_finetune_embed.evaluate.results import (
    ComparisonTable,
    QueryRow,
    RetrievalResult,
    interval_dict,
)
from llama_index_finetune_embed.evaluate.retriever import as_retriever, build_index, run_retriever

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Method = Literal["auto", "fast", "retriever"]
Index = Literal["plain", "windows"]
_F = TypeVar("_F", bound=Callable[..., Any])


class RetrievalEvaluator:
    """Retrieval metrics of one model per call, on one dataset, with settings checked once.

    Everything is validated here, before any embedding: the dataset (or the path of its JSON
    file), ``top_k``, ``method``, the bootstrap settings and ``primary_metric``.

    Args:
        dataset: the evaluation dataset (or the path of its JSON file).
        top_k: how many chunks are retrieved per query; LlamaIndex metrics are scored @top_k.
        method: ``"fast"`` (batched, embed model only), ``"retriever"`` (VectorStoreIndex +
            RetrieverEvaluator) or ``"auto"`` (fast unless a retriever is given).
        max_seq_length: for a model given by id/path, tokens it reads at once (longer chunks
            are cut at this length, as ``HuggingFaceEmbedding`` does).
        index: how chunks are indexed: ``"plain"`` (a ``VectorStoreIndex``, one vector per
            chunk) or ``"windows"`` (``build_window_index``: chunks longer than the model's
            window read as windows, each chunk scored by its best window).
        num_workers: concurrent queries on the retriever path (or query embeddings for API
            models).
        show_progress: progress bars; ``None``: when this stage logs at INFO.
        confidence: level of the bootstrap intervals.
        n_resamples: bootstrap resamples of the queries.
        seed: bootstrap seed (same seed + same queries = paired resamples across models).
        primary_metric: the metric a report leads with (a key of ``RetrievalResult.metrics``).
        embed_on: where the fast path embeds the corpus: ``"local"`` (this process) or
            ``"ray"`` (a :class:`~llama_index_finetune_embed.serving.RayEmbedder` per
            ``HuggingFaceEmbedding``, on the cluster ``ray.init()`` joins; other models stay
            local). Same vectors either way.
        vector_cache: a :class:`~llama_index_finetune_embed.vectors.VectorCache` (or its
            folder) the fast path reads vectors from and adds to, by model and text: a text
            one model has embedded (in this evaluator or another, plain or in windows, a query
            or a chunk) is not embedded again.

    Raises:
        ValueError: empty dataset, expected ids missing from the corpus, ``top_k < 1``, an
            unknown ``method`` or ``primary_metric``, bad bootstrap settings.

    Example:
        >>> from llama_index_finetune_embed.evaluate import RetrievalEvaluator
        >>> evaluator = RetrievalEvaluator("val_dataset.json", top_k=5)  # doctest: +SKIP
        >>> base = evaluator("local:all-MiniLM-L6-v2", name="base")  # doctest: +SKIP
        >>> tuned = evaluator("runs/x/model", name="finetuned")  # doctest: +SKIP
        >>> tuned.metrics["hit_rate"] - base.metrics["hit_rate"]  # doctest: +SKIP
        0.057
    """

    def __init__(
        self,
        dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
        *,
        top_k: int = 5,
        method: Method = "auto",
        max_seq_length: int | None = None,
        index: Index = "plain",
        num_workers: int = 8,
        show_progress: bool | None = None,
        confidence: float = 0.95,
        n_resamples: int = 2000,
        seed: int = 0,
        primary_metric: str = "mrr",
        embed_on: str = "local",
        vector_cache: Any = None,
    ) -> None:
        self.dataset = EmbeddingQAFinetuneDataset.coerce(dataset, allow_path=True)
        _check_options(top_k, confidence, n_resamples)
        if method not in ("auto", "fast", "retriever"):
            raise ValueError(f"method must be 'auto', 'fast' or 'retriever', got {method!r}")
        if index not in ("plain", "windows"):
            raise ValueError(f"index must be 'plain' or 'windows', got {index!r}")
        if embed_on not in ("local", "ray"):
            raise ValueError(f"embed_on must be 'local' or 'ray', got {embed_on!r}")
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
            raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
        depth = top_k if method == "retriever" else None
        _check_primary(primary_metric, metrics.metric_names(max_depth=depth))
        self.top_k, self.method, self.max_seq_length = top_k, method, max_seq_length
        self.index = index
        self.num_workers, self.show_progress = num_workers, show_progress
        self.confidence, self.n_resamples, self.seed = confidence, n_resamples, seed
        self.primary_metric, self.embed_on = primary_metric, embed_on
        if isinstance(vector_cache, (str, os.PathLike)):
            from llama_index_finetune_embed.vectors import VectorCache

            vector_cache = VectorCache(vector_cache)
        self.vector_cache = vector_cache

    def __call__(
        self,
        embed_model: BaseEmbedding | str | os.PathLike[str] | None = None,
        *,
        retriever: Any = None,
        name: str | None = None,
    ) -> RetrievalResult:
        """Evaluate an embed model (or model id/path) or a retriever/index; ``name`` labels it.

        A retriever's node ids must be the corpus ids; its results are truncated to ``top_k``.
        The name defaults to the model's (or the retriever's class) name.
        """
        if retriever is not None and embed_model is not None:
            raise ValueError("pass either embed_model or retriever=, not both")
        if retriever is None and embed_model is None:
            raise ValueError("pass an embed model (or model id/path) or retriever=")
        if retriever is not None and self.method == "fast":
            raise ValueError(
                "method='fast' needs an embed model; a retriever is evaluated query by query"
            )
        if retriever is None and self.method != "retriever":
            model = resolve_embed_model(embed_model, max_seq_length=self.max_seq_length)
            return self.score_embeddings(self._embed(model), name=name or model_label(embed_model))
        _check_primary(self.primary_metric, metrics.metric_names(max_depth=self.top_k))
        if retriever is None:
            model = resolve_embed_model(embed_model, max_seq_length=self.max_seq_length)
            name = name or model_label(embed_model)
            retriever = build_index(
                self.dataset, model, show_progress=self.show_progress,
                windows=self.index == "windows",
            )  # fmt: skip
        return self._retrieve(retriever, name or type(retriever).__name__)

    def embed(self, embed_model: BaseEmbedding | str | os.PathLike[str]) -> DatasetEmbeddings:
        """The dataset's query and corpus embeddings under ``embed_model`` (the fast path's input).

        The corpus is embedded as ``VectorStoreIndex`` embeds nodes, queries through the model's
        query path (batched, with the query prompt, for ``HuggingFaceEmbedding``): ``fast.embed``.
        """
        return self._embed(resolve_embed_model(embed_model, max_seq_length=self.max_seq_length))

    def score_embeddings(
        self, embeddings: DatasetEmbeddings, *, name: str = "embeddings"
    ) -> RetrievalResult:
        """Metrics from precomputed embeddings (the fast path without the embedding step)."""
        rows = fast.rank_rows(self.dataset, embeddings, self.top_k)
        return self._result(name, "fast", rows)

    def score_stored(
        self,
        embed_model: BaseEmbedding | str | os.PathLike[str],
        corpus_vectors: Mapping[str, Sequence[Sequence[float]]],
        *,
        name: str,
    ) -> RetrievalResult:
        """Metrics of vectors an index already holds: ``corpus_vectors`` maps each corpus id to
        its stored vectors (one for a plain index; several, one per window, for a window index:
        a chunk scores its best); only the queries are embedded, by ``embed_model``.

        Raises:
            ValueError: a corpus id has no stored vector.

        Example:
            >>> vectors = stored_vectors("postgresql://me@db:5432/rag?table=chunks", val.corpus)
            ... # doctest: +SKIP
            >>> evaluator.score_stored(OpenAIEmbedding(), vectors, name="today")  # doctest: +SKIP
        """
        missing = [cid for cid in self.dataset.corpus if not corpus_vectors.get(cid)]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(self.dataset.corpus)} chunks have no stored vector "
                f"(e.g. {missing[0]!r})"
            )
        model = resolve_embed_model(embed_model, max_seq_length=self.max_seq_length)
        rows, starts = [], []
        for cid in self.dataset.corpus:
            starts.append(len(rows))
            rows += [list(v) for v in corpus_vectors[cid]]
        progress = progress_enabled(self.show_progress, logger)
        queries = self._query_embedder(model, progress)(list(self.dataset.queries.values()))
        grouped = None if len(rows) == len(starts) else np.asarray(starts, dtype=np.int64)
        embeddings = DatasetEmbeddings(
            np.asarray(queries, np.float64), np.asarray(rows, np.float64), grouped
        )
        return self.score_embeddings(embeddings, name=name)

    def _retrieve(self, retriever: Any, name: str) -> RetrievalResult:
        retriever = as_retriever(retriever, self.top_k)
        rows = run_retriever(
            self.dataset,
            retriever,
            self.top_k,
            num_workers=self.num_workers,
            show_progress=self.show_progress,
        )
        return self._result(name, "retriever", rows)

    def _embed(self, model: BaseEmbedding) -> DatasetEmbeddings:
        progress = progress_enabled(self.show_progress, logger)
        embed_with = self._embed_with(model)
        if self.vector_cache is not None:
            embed_with = self.vector_cache.embedder(model, embed_with, show_progress=progress)
        embed_queries = self._query_embedder(model, progress)
        return fast.embed(
            self.dataset, model, num_workers=self.num_workers, progress=progress,
            windows=self.index == "windows", embed_with=embed_with, embed_queries=embed_queries,
        )  # fmt: skip

    def _query_embedder(self, model: BaseEmbedding, progress: bool) -> Any:
        """queries -> vectors through the model's query path, via the cache when there is one."""

        def embed(queries: list[str]) -> Any:
            return fast.embed_query_texts(model, queries, self.num_workers, progress)

        if self.vector_cache is None:
            return embed
        return self.vector_cache.embedder(model, side="query", embed_with=embed)

    def _embed_with(self, model: BaseEmbedding) -> Any:
        from llama_index_finetune_embed.serving import ray_embedder

        return ray_embedder(model, self.embed_on)

    def _result(self, name: str, method: str, rows: Sequence[QueryRow]) -> RetrievalResult:
        keys = [k for k in rows[0].metrics if all(k in r.metrics for r in rows)]
        _check_primary(self.primary_metric, keys)
        values = np.array([[r.metrics[k] for k in keys] for r in rows], dtype=np.float64)
        boot = metrics.bootstrap_means(values, self.n_resamples, self.seed)
        lo, hi = metrics.percentile_interval(boot, self.confidence)
        return RetrievalResult(
            name=name,
            top_k=self.top_k,
            method=method,
            num_queries=len(rows),
            num_corpus=len(self.dataset.corpus),
            metrics=dict(zip(keys, values.mean(axis=0).tolist(), strict=True)),
            ci=interval_dict(keys, lo, hi),
            per_query=list(rows),
            primary_metric=self.primary_metric,
            confidence=self.confidence,
            n_resamples=self.n_resamples,
            seed=self.seed,
        )


# -- the public functions: thin forms of RetrievalEvaluator, taking its settings ------------

#: The evaluator's keyword-only settings; the public functions take them as ``**settings``.
_SETTINGS = [
    p for p in inspect.signature(RetrievalEvaluator).parameters.values() if p.kind is p.KEYWORD_ONLY
]


def _takes_settings(fn: _F) -> _F:
    """``fn(..., **settings)`` showing the evaluator's settings in its signature (``help()``,
    IDEs, ``inspect``) and taking ``workers=``, the old name of ``num_workers=``, with a warning."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "workers" in kwargs:
            if "num_workers" in kwargs:
                raise TypeError(f"{fn.__name__}() got workers= and num_workers=; pass num_workers=")
            message = f"{fn.__name__}(workers=...) is deprecated; pass num_workers=... instead"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            kwargs["num_workers"] = kwargs.pop("workers")
        return fn(*args, **kwargs)

    own = inspect.signature(fn)
    # a setting fn takes in a form of its own (compare_embed_models' index) keeps its place
    settings = [own.parameters.get(p.name, p) for p in _SETTINGS]
    names = {p.name for p in settings}
    params = [p for p in own.parameters.values()
              if p.kind is not p.VAR_KEYWORD and p.name not in names]  # fmt: skip
    wrapper.__signature__ = own.replace(parameters=[*params, *settings])  # type: ignore[attr-defined]
    head, example, tail = (fn.__doc__ or "").partition("    Example:")
    wrapper.__doc__ = head + _settings_note() + example + tail
    return wrapper  # type: ignore[return-value]


def _settings_note() -> str:
    listed = ", ".join(f"``{p.name}={p.default!r}``" for p in _SETTINGS)
    text = (
        f"Settings (keyword-only, checked before any embedding), as in RetrievalEvaluator: "
        f"{listed}. ``workers=`` is the deprecated name of ``num_workers=``."
    )
    return textwrap.indent(textwrap.fill(text, 92), "    ") + "\n\n"


@_takes_settings
def evaluate_retrieval(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    embed_model: BaseEmbedding | str | os.PathLike[str] | None = None,
    *,
    retriever: Any = None,
    name: str | None = None,
    **settings: Any,
) -> RetrievalResult:
    """Retrieval metrics of an embed model or a retriever on a dataset, with 95% intervals.

    ``RetrievalEvaluator(dataset, **settings)(embed_model, retriever=..., name=...)``.

    Args:
        dataset: the evaluation dataset (or the path of its JSON file).
        embed_model: a LlamaIndex embed model, a model id/path or ``"local:all-MiniLM-L6-v2"``.
        retriever: instead of ``embed_model``: a LlamaIndex retriever, or an index (its
            ``as_retriever(similarity_top_k=top_k)`` is used). Its node ids must be the corpus
            ids. Results are truncated to ``top_k``.
        name: label of the result (default: the model or retriever class name).
        **settings: :class:`RetrievalEvaluator`'s (below).

    Returns:
        A :class:`RetrievalResult`: mean ``metrics``, ``ci`` and one ``per_query`` row per query.

    Raises:
        ValueError: empty dataset, expected ids missing from the corpus, ``top_k < 1``, or a
            retriever whose node ids are not the corpus ids.

    Example:
        >>> from llama_index_finetune_embed import evaluate_retrieval
        >>> val = "../shared/data/seed10k/val_dataset.json"  # 790 questions, 395 chunks
        >>> result = evaluate_retrieval(
        ...     val, "local:all-MiniLM-L6-v2", top_k=5, max_seq_length=512
        ... )  # doctest: +SKIP
        >>> hit, (lo, hi) = result.metrics["hit_rate"], result.ci["hit_rate"]  # doctest: +SKIP
        >>> f"{hit:.3f} [{lo:.3f}, {hi:.3f}]"  # doctest: +SKIP
        '0.762 [0.732, 0.792]'
    """
    return RetrievalEvaluator(dataset, **settings)(embed_model, retriever=retriever, name=name)


@_takes_settings
def compare_embed_models(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    models: Mapping[str, BaseEmbedding | str | os.PathLike[str]],
    *,
    index: Literal["plain", "windows", "both"] = "plain",
    **settings: Any,
) -> ComparisonTable:
    """One row per model, deltas and paired-bootstrap differences against the first model.

    One :class:`RetrievalEvaluator` called per model. Put first what the user has today: a model
    id or path is loaded as LlamaIndex loads it (``HuggingFaceEmbedding(model_name=...)``: its
    configured max length, long chunks truncated; saved prompts kept), or pass the embed model
    of the user's own index. ``index="windows"`` scores every model in ``build_window_index``;
    ``"both"`` gives each model two rows, plain and then ``"<name> + windows"`` (the first row,
    plain, stays the reference). ``max_seq_length`` overrides the length of every model given by
    id/path.

    With ``method="auto"`` every model is evaluated on the fast path (embeddings computed once
    per model, reused by all metrics); the resamples are shared, so the differences are paired
    by query.

    Example:
        >>> models = {"base": "local:all-MiniLM-L6-v2", "finetuned": "runs/x/model"}
        >>> table = compare_embed_models(val, models, top_k=5)  # doctest: +SKIP
        >>> print(table.to_markdown()); table.plot("report.png")  # doctest: +SKIP
    """
    if index not in ("plain", "windows", "both"):
        raise ValueError(f"index must be 'plain', 'windows' or 'both', got {index!r}")
    kinds = ["plain", "windows"] if index == "both" else [index]
    evaluators = {k: RetrievalEvaluator(dataset, index=k, **settings) for k in kinds}
    if not models:
        raise ValueError("models is empty: pass e.g. {'base': 'local:all-MiniLM-L6-v2'}")
    results = []
    for label, spec in models.items():
        model = spec if kinds == ["plain"] else _loaded(spec, evaluators[kinds[0]])
        for kind, evaluator in evaluators.items():
            name = f"{label} + windows" if index == "both" and kind == "windows" else label
            logger.info("evaluating %s", name)
            results.append(evaluator(model, name=name))
    return ComparisonTable.from_results(results)


def _loaded(spec: Any, evaluator: RetrievalEvaluator) -> Any:
    """A model id/path loaded once for both of its rows."""
    return resolve_embed_model(spec, max_seq_length=evaluator.max_seq_length)


@_takes_settings
def evaluate_embeddings(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    embeddings: DatasetEmbeddings,
    *,
    name: str = "embeddings",
    **settings: Any,
) -> RetrievalResult:
    """Metrics from precomputed embeddings (the fast path without the embedding step).

    ``RetrievalEvaluator(dataset, **settings).score_embeddings(embeddings, name=name)``.

    Example:
        >>> emb = embed_dataset(val, embed_model)  # doctest: +SKIP
        >>> at5, at10 = (evaluate_embeddings(val, emb, top_k=k) for k in (5, 10))  # doctest: +SKIP
    """
    return RetrievalEvaluator(dataset, **settings).score_embeddings(embeddings, name=name)


@_takes_settings
def embed_dataset(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    embed_model: BaseEmbedding | str | os.PathLike[str],
    **settings: Any,
) -> DatasetEmbeddings:
    """Embed a dataset's corpus (document side) and queries (query side, with its instruction).

    ``RetrievalEvaluator(dataset, **settings).embed(embed_model)``: the corpus goes through
    ``get_text_embedding_batch`` exactly as ``VectorStoreIndex`` embeds nodes; queries through
    the model's query path.

    Example:
        >>> emb = embed_dataset(val, "local:all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> emb.queries.shape, emb.corpus.shape  # doctest: +SKIP
        ((790, 384), (395, 384))
    """
    return RetrievalEvaluator(dataset, **settings).embed(embed_model)


def ir_metrics(
    dataset: EmbeddingQAFinetuneDataset | str | os.PathLike[str],
    model_or_path: SentenceTransformer | str | os.PathLike[str],
    *,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    show_progress: bool | None = None,
) -> dict[str, float]:
    """InformationRetrievalEvaluator numbers for a sentence-transformers model (or its path).

    Embeds like the evaluator (``encode_query``/``encode_document`` with the model's prompts) and
    returns its metrics under its names without the ``cosine_`` prefix: ``accuracy@{1,3,5,10}``,
    ``precision@k``, ``recall@k``, ``mrr@10``, ``ndcg@10``, ``map@100``.

    Example:
        >>> ir_metrics(val, "local:all-MiniLM-L6-v2", max_seq_length=512)  # doctest: +SKIP
        {'accuracy@1': 0.4747, ..., 'mrr@10': 0.5972, 'ndcg@10': 0.6568, 'map@100': 0.6029}
    """
    from llama_index_finetune_embed.embeddings import load_sentence_transformer

    evaluator = RetrievalEvaluator(dataset, top_k=metrics.IR_DEPTH, n_resamples=1)
    if isinstance(model_or_path, (str, os.PathLike)):
        model = load_sentence_transformer(model_or_path)
    else:
        model = model_or_path
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    progress = progress_enabled(show_progress, logger)
    kwargs = dict(batch_size=batch_size, show_progress_bar=progress)
    ds = evaluator.dataset
    emb = DatasetEmbeddings(
        model.encode_query(list(ds.queries.values()), **kwargs),
        model.encode_document(list(ds.corpus.values()), **kwargs),
    )
    return {k: v for k, v in evaluator.score_embeddings(emb).metrics.items() if "@" in k}


# -- checks ---------------------------------------------------------------------------------


def _check_options(top_k: Any, confidence: float, n_resamples: int) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")


def _check_primary(primary: str, keys: Sequence[str]) -> None:
    if primary not in keys:
        raise ValueError(f"primary_metric {primary!r} is not one of {list(keys)}")
