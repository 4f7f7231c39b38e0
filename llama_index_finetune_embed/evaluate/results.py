"""Evaluation results as data: per-query rows, one model's result, a comparison.

The public names are re-exported by :mod:`llama_index_finetune_embed.evaluate`. Rendering lives
in :mod:`.report`; this module never imports it at import time (``to_markdown``/``plot`` import
it when called), so data and rendering do not import each other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.bridge.pydantic import BaseModel, Field

from llama_index_finetune_embed.evaluate.metrics import (
    bootstrap_means,
    percentile_interval,
    two_sided_p,
)


def interval_dict(
    keys: Sequence[str], lo: np.ndarray, hi: np.ndarray
) -> dict[str, tuple[float, float]]:
    return {k: (float(a), float(b)) for k, a, b in zip(keys, lo, hi, strict=True)}


class QueryRow(BaseModel):
    """One query's retrieval: what was expected, what came back, and every metric's value."""

    query_id: str
    query: str
    expected_ids: list[str]
    retrieved_ids: list[str] = Field(description="top_k retrieved corpus ids, best first")
    scores: list[float] = Field(
        default_factory=list, description="cosine of retrieved_ids (fast path)"
    )
    first_relevant_rank: int | None = Field(
        default=None, description="1-based rank of the first expected id in the ranking searched"
    )
    metrics: dict[str, float]


class RetrievalResult(BaseModel):
    """Mean metrics over queries, their bootstrap intervals, and the per-query rows.

    ``metrics`` holds LlamaIndex's ``hit_rate, mrr, precision, recall, ap, ndcg`` (scored on the
    ``top_k`` retrieved ids) and sentence-transformers' IR metrics (``accuracy@k``,
    ``precision@k``, ``recall@k``, ``mrr@10``, ``ndcg@10``, ``map@100``; on the retriever path
    only those with ``k <= top_k``).

    Example:
        >>> result.metrics["hit_rate"], result.ci["hit_rate"]  # doctest: +SKIP
        (0.762, (0.732, 0.791))
    """

    name: str
    top_k: int = Field(gt=0)
    method: Literal["fast", "retriever"]
    num_queries: int
    num_corpus: int
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    per_query: list[QueryRow]
    primary_metric: str = "mrr"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def values(self, metric: str) -> np.ndarray:
        """Per-query values of one metric, in query order."""
        if metric not in self.metrics:
            raise KeyError(f"unknown metric {metric!r}; have {sorted(self.metrics)}")
        return np.array([row.metrics[metric] for row in self.per_query], dtype=np.float64)

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """A one-row markdown table of this result (see :func:`.report.render_markdown`)."""
        return ComparisonTable.from_results([self]).to_markdown(metrics)

    def to_dict(self, *, per_query: bool = True) -> dict[str, Any]:
        """JSON-serializable dict (``per_query=False`` drops the rows)."""
        return self.model_dump(mode="json", exclude=None if per_query else {"per_query"})


class PairedDiff(BaseModel):
    """``model`` minus ``baseline`` on one metric, with a paired bootstrap interval and p-value."""

    model: str
    baseline: str
    metric: str
    delta: float
    ci: tuple[float, float]
    p_value: float
    significant: bool = Field(description="the interval excludes 0")


class WinLossRow(BaseModel):
    """A query on which model ``a`` and model ``b`` score differently."""

    query_id: str
    query: str
    expected_ids: list[str]
    metric: str
    a_value: float
    b_value: float
    delta: float
    a_rank: int | None
    b_rank: int | None
    a_top: list[str]
    b_top: list[str]


class ComparisonTable(BaseModel):
    """Results of several models on the same queries; the first is the baseline.

    Example:
        >>> table.deltas["finetuned"]["hit_rate"]  # doctest: +SKIP
        0.057
        >>> print(table.to_markdown()); table.plot("report.png")  # doctest: +SKIP
    """

    results: list[RetrievalResult]
    paired: list[PairedDiff] = Field(default_factory=list)

    @classmethod
    def from_results(cls, results: Sequence[RetrievalResult]) -> ComparisonTable:
        """Check the results share their queries, then compute paired differences vs the first."""
        if not results:
            raise ValueError("no results to compare")
        names = [r.name for r in results]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        qids = [row.query_id for row in results[0].per_query]
        for r in results[1:]:
            if r.top_k != results[0].top_k:
                raise ValueError(
                    f"{r.name!r} was scored at top_k={r.top_k}, {names[0]!r} at "
                    f"top_k={results[0].top_k}: compare results at the same top_k"
                )
            if [row.query_id for row in r.per_query] != qids:
                raise ValueError(f"{r.name!r} was evaluated on other queries than {names[0]!r}")
        table = cls(results=list(results))
        table.paired = [d for r in results[1:] for d in table.paired_diffs(r.name, names[0])]
        return table

    @property
    def baseline(self) -> str:
        return self.results[0].name

    @property
    def metric_names(self) -> list[str]:
        """Metrics every result has, in the first result's order."""
        return [m for m in self.results[0].metrics if all(m in r.metrics for r in self.results)]

    @property
    def deltas(self) -> dict[str, dict[str, float]]:
        """model -> metric -> mean difference to the baseline."""
        base = self.results[0].metrics
        return {
            r.name: {m: r.metrics[m] - base[m] for m in self.metric_names} for r in self.results
        }

    def result(self, name: str) -> RetrievalResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no model named {name!r}; have {[r.name for r in self.results]}")

    def paired_diffs(
        self, model: str, baseline: str | None = None, metrics: Sequence[str] | None = None
    ) -> list[PairedDiff]:
        """Paired bootstrap of ``model - baseline`` per metric (same query resamples for both)."""
        a, b = self.result(model), self.result(baseline or self.baseline)
        keys = list(metrics or self.metric_names)
        diff = np.stack([a.values(k) - b.values(k) for k in keys], axis=1)
        boot = bootstrap_means(diff, a.n_resamples, a.seed)
        lo, hi = percentile_interval(boot, a.confidence)
        p = two_sided_p(boot)
        return [
            PairedDiff(
                model=a.name,
                baseline=b.name,
                metric=k,
                delta=float(diff[:, i].mean()),
                ci=(float(lo[i]), float(hi[i])),
                p_value=float(p[i]),
                significant=bool(lo[i] > 0 or hi[i] < 0),
            )
            for i, k in enumerate(keys)
        ]

    def paired_diff(self, model: str, metric: str, baseline: str | None = None) -> PairedDiff:
        """The stored (or freshly computed) paired difference of one model on one metric."""
        base = baseline or self.baseline
        for d in self.paired:
            if d.model == model and d.baseline == base and d.metric == metric:
                return d
        return self.paired_diffs(model, base, [metric])[0]

    def wins_losses(
        self, a: str | None = None, b: str | None = None, metric: str | None = None
    ) -> list[WinLossRow]:
        """Queries where ``a`` (default: the second model) beats or loses to ``b`` (the baseline).

        Rows are ordered from the biggest win to the biggest loss; ties are left out.
        """
        if a is None and len(self.results) < 2:
            raise ValueError("wins_losses needs two models")
        ra = self.result(a or self.results[1].name)
        rb = self.result(b or self.baseline)
        metric = metric or ra.primary_metric
        rows = []
        for qa, qb in zip(ra.per_query, rb.per_query, strict=True):
            va, vb = qa.metrics[metric], qb.metrics[metric]
            if va != vb:
                rows.append(
                    WinLossRow(
                        query_id=qa.query_id,
                        query=qa.query,
                        expected_ids=qa.expected_ids,
                        metric=metric,
                        a_value=va,
                        b_value=vb,
                        delta=va - vb,
                        a_rank=qa.first_relevant_rank,
                        b_rank=qb.first_relevant_rank,
                        a_top=qa.retrieved_ids,
                        b_top=qb.retrieved_ids,
                    )
                )
        return sorted(rows, key=lambda r: -r.delta)

    def win_loss_counts(
        self, a: str, b: str | None = None, metric: str | None = None
    ) -> dict[str, int]:
        """How many queries ``a`` scores higher / lower / the same as ``b`` on ``metric``."""
        ra, rb = self.result(a), self.result(b or self.baseline)
        diff = ra.values(metric or ra.primary_metric) - rb.values(metric or ra.primary_metric)
        return {
            "better": int((diff > 0).sum()),
            "worse": int((diff < 0).sum()),
            "same": int((diff == 0).sum()),
        }

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """Markdown report: the table with intervals and deltas, paired tests, wins/losses."""
        from llama_index_finetune_embed.evaluate.report import render_markdown

        return render_markdown(self, metrics=metrics)

    def plot(self, path: str | os.PathLike[str], metrics: Sequence[str] | None = None) -> Path:
        """Write a PNG bar chart (intervals as error bars, deltas labelled); returns its path."""
        from llama_index_finetune_embed.evaluate.report import plot_comparison

        return plot_comparison(self, path, metrics=metrics)

    def to_dict(self, *, per_query: bool = False) -> dict[str, Any]:
        """JSON-serializable summary (``per_query=True`` keeps every row of every model)."""
        return {
            "baseline": self.baseline,
            "results": [r.to_dict(per_query=per_query) for r in self.results],
            "deltas": self.deltas,
            "paired": [d.model_dump(mode="json") for d in self.paired],
            "win_loss": {r.name: self.win_loss_counts(r.name) for r in self.results[1:]},
        }
