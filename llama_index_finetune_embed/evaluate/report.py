"""Evaluation results -> a markdown table and a PNG chart (the run's report.md: ``run_report``).

Rendering only (matplotlib imported lazily); each takes a
:class:`~llama_index_finetune_embed.evaluate.ComparisonTable` (one model is fine).
The PNG is drawn on a bare Agg canvas, never through pyplot, so it works headless and leaves the
caller's matplotlib backend alone.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llama_index_finetune_embed._io import atomic_open

if TYPE_CHECKING:
    from llama_index_finetune_embed.evaluate.results import ComparisonTable, PairedDiff

#: Metrics a report leads with, when present: hit rate and MRR @top_k, MRR@10 and NDCG@10.
HEADLINE = ("hit_rate", "mrr", "mrr@10", "ndcg@10")
IR_COLUMNS = (
    "accuracy@1",
    "accuracy@3",
    "accuracy@5",
    "accuracy@10",
    "mrr@10",
    "ndcg@10",
    "map@100",
)
_COLORS = ("#9aa5b1", "#2f6fdf", "#e07b39", "#3aa776", "#a05cc8", "#c9a227")


def metric_label(metric: str, top_k: int) -> str:
    """Display name: ``hit_rate`` -> ``hit@5``, ``mrr`` -> ``MRR@5``, ``mrr@10`` -> ``MRR@10``."""
    short = {
        "hit_rate": "hit",
        "mrr": "MRR",
        "precision": "P",
        "recall": "R",
        "ap": "AP",
        "ndcg": "NDCG",
    }
    if metric in short:
        return f"{short[metric]}@{top_k}"
    name, _, k = metric.partition("@")
    long = {
        "accuracy": "acc",
        "mrr": "MRR",
        "ndcg": "NDCG",
        "map": "MAP",
        "precision": "P",
        "recall": "R",
    }
    return f"{long.get(name, name)}@{k}" if k else metric


def headline_metrics(table: ComparisonTable, metrics: Sequence[str] | None = None) -> list[str]:
    """The requested metrics (checked), else the headline ones every model has, each label once
    (at ``top_k=10``, ``mrr`` and ``mrr@10`` are both "MRR@10": the first is kept)."""
    have = table.metric_names
    if metrics:
        unknown = [m for m in metrics if m not in have]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; available: {have}")
        return list(metrics)
    k, labels, keys = table.results[0].top_k, set(), []
    for metric in (m for m in HEADLINE if m in have):
        if metric_label(metric, k) not in labels:
            labels.add(metric_label(metric, k))
            keys.append(metric)
    return keys


# -- markdown -------------------------------------------------------------------------------


def render_markdown(
    table: ComparisonTable, metrics: Sequence[str] | None = None, *, examples: int = 3
) -> str:
    """Markdown: table with intervals and deltas, paired tests, wins/losses, IR-evaluator numbers.

    Example:
        >>> print(render_markdown(table))  # doctest: +SKIP
        | model | hit@5 | MRR@5 | MRR@10 | NDCG@10 |
        ...
    """
    keys = headline_metrics(table, metrics)
    first = table.results[0]
    lines = [
        f"Retrieval on {first.num_queries} queries over {first.num_corpus} chunks, "
        f"top_k={first.top_k}. Scores x100; brackets: {first.confidence:.0%} bootstrap interval "
        f"({first.n_resamples:,} resamples of the queries); (+d): difference to {table.baseline}.",
        "",
        *_main_table(table, keys),
    ]
    for r in table.results[1:]:
        lines += ["", *_paired_section(table, r.name, keys, examples)]
    ir = [m for m in IR_COLUMNS if m in table.metric_names]
    if ir:
        lines += ["", "sentence-transformers InformationRetrievalEvaluator metrics (x100):", ""]
        lines += _plain_table(table, ir)
    return "\n".join(lines) + "\n"


def _header(table: ComparisonTable, keys: list[str]) -> list[str]:
    k = table.results[0].top_k
    return [
        "| model | " + " | ".join(metric_label(m, k) for m in keys) + " |",
        "|:--|" + "--:|" * len(keys),
    ]


def _main_table(table: ComparisonTable, keys: list[str]) -> list[str]:
    out = _header(table, keys)
    for i, r in enumerate(table.results):
        cells = []
        for m in keys:
            lo, hi = r.ci[m]
            cell = f"**{_pts(r.metrics[m])}** [{_pts(lo)}, {_pts(hi)}]"
            if i:
                cell += f" ({_signed(table.deltas[r.name][m])})"
            cells.append(cell)
        out.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return out


def _plain_table(table: ComparisonTable, keys: list[str]) -> list[str]:
    out = _header(table, keys)
    for r in table.results:
        out.append(f"| {r.name} | " + " | ".join(_pts(r.metrics[m]) for m in keys) + " |")
    return out


def _paired_section(table: ComparisonTable, name: str, keys: list[str], examples: int) -> list[str]:
    k = table.results[0].top_k
    out = [
        f"**{name} vs {table.baseline}** (paired bootstrap over the same resampled queries):",
        "",
        "| metric | difference | interval | p | verdict |",
        "|:--|--:|--:|--:|:--|",
    ]
    for m in keys:
        d = table.paired_diff(name, m)
        interval = f"[{_signed(d.ci[0])}, {_signed(d.ci[1])}]"
        p_value = _p(d.p_value, table.results[0].n_resamples)
        cells = (metric_label(m, k), _signed(d.delta), interval, p_value,
                 _verdict(d, table.results[0].num_queries))  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    primary = table.result(name).primary_metric
    counts = table.win_loss_counts(name, metric=primary)
    diff = table.paired_diff(name, primary)
    half = 100 * (diff.ci[1] - diff.ci[0]) / 2
    out += [
        "",
        f"Resolution: with {table.results[0].num_queries} queries the interval of the "
        f"{metric_label(primary, k)} difference is ±{half:.1f} points wide: differences "
        f"smaller than about {half:.0f} points cannot be told from noise here.",
        "",
        f"Per query ({metric_label(primary, k)}): {name} better on {counts['better']}, worse on "
        f"{counts['worse']}, same on {counts['same']}.",
    ]
    rows = table.wins_losses(name, table.baseline, primary)
    wins, losses = [r for r in rows if r.delta > 0][:examples], [r for r in rows if r.delta < 0]
    for label, picked in (("Biggest wins", wins), ("Biggest losses", losses[::-1][:examples])):
        if picked:
            out += ["", f"{label}:"] + [
                f"- {_quote(r.query)} (rank {_rank(r.b_rank)} -> {_rank(r.a_rank)})" for r in picked
            ]
    return out


def _verdict(d: PairedDiff, queries: int) -> str:
    """The verdict with its yardstick: how many queries it rests on."""
    if not d.significant:
        return f"no clear difference on {queries} queries"
    return f"real {'gain' if d.delta > 0 else 'loss'} on {queries} queries"


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def _p(p: float, n: int) -> str:
    return f"<{max(1 / n, 0.001):g}" if p <= max(1 / n, 0.001) else f"{p:.3f}"


def _rank(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


def _quote(text: str, width: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return f'"{text if len(text) <= width else text[: width - 1] + "…"}"'


# -- PNG ------------------------------------------------------------------------------------


def plot_comparison(
    table: ComparisonTable, path: str | os.PathLike[str], metrics: Sequence[str] | None = None
) -> Path:
    """Write a bar chart PNG: one group per metric, one bar per model, intervals as error bars.

    Bars are labelled with their value; non-baseline bars also with their difference to the
    baseline (green/red when the paired interval excludes 0, grey otherwise). With two or more
    models a second panel shows per-query wins, ties and losses against the baseline.

    Example:
        >>> plot_comparison(table, "report.png")  # doctest: +SKIP
        PosixPath('report.png')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = headline_metrics(table, metrics)
    several = len(table.results) > 1
    fig = Figure(figsize=(11 if several else 8, 4.8), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(3, 1.3)) if several else fig.add_gridspec(1, 1)
    _bars(fig.add_subplot(grid[0, 0]), table, keys)
    if several:
        _wins_panel(fig.add_subplot(grid[0, 1]), table)
        fig.supxlabel(
            f"numbers above bars: difference to {table.baseline} in points; bold green/red = the "
            "paired bootstrap interval excludes 0, grey = no clear difference",
            fontsize=8,
            color="#555555",
        )
    out = Path(path)
    with atomic_open(out, "wb") as fh:
        fig.savefig(fh, format="png")
    return out


def _bars(ax, table: ComparisonTable, keys: list[str]) -> None:  # noqa: ANN001
    import numpy as np

    n, k = len(table.results), table.results[0].top_k
    width = 0.8 / n
    x = np.arange(len(keys))
    for i, r in enumerate(table.results):
        vals = np.array([100 * r.metrics[m] for m in keys])
        lo = vals - np.array([100 * r.ci[m][0] for m in keys])
        hi = np.array([100 * r.ci[m][1] for m in keys]) - vals
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, vals, width * 0.92, color=_COLORS[i % len(_COLORS)], label=r.name, zorder=2)
        ax.errorbar(
            pos, vals, yerr=[lo, hi], fmt="none", ecolor="#333333", capsize=3, lw=1, zorder=3
        )
        for j, m in enumerate(keys):
            ax.text(
                pos[j],
                vals[j] / 2,
                f"{vals[j]:.1f}",
                ha="center",
                va="center",
                color="white",
                fontsize=8,
                fontweight="bold",
                rotation=90 if n > 3 else 0,
            )
            if i:
                _delta_label(ax, table.paired_diff(r.name, m), pos[j], vals[j] + hi[j])
    ax.set_xticks(x, [metric_label(m, k) for m in keys])
    ax.set_ylim(0, 122)  # headroom for the delta labels and the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(f"score x100 (error bars: {table.results[0].confidence:.0%} bootstrap interval)")
    first = table.results[0]
    ax.set_title(
        f"Retrieval: {first.num_queries} queries, {first.num_corpus} chunks, top_k={k}", loc="left"
    )
    ax.grid(axis="y", color="#e5e5e5", zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", ncols=min(n, 4), frameon=False, fontsize=9)


def _delta_label(ax, diff: PairedDiff, x: float, top: float) -> None:  # noqa: ANN001
    color = (
        "#2e8b57"
        if diff.significant and diff.delta > 0
        else "#c0392b"
        if diff.significant
        else "#888888"
    )
    ax.text(
        x,
        top + 1.5,
        f"{100 * diff.delta:+.1f}",
        ha="center",
        va="bottom",
        fontsize=8,
        color=color,
        fontweight="bold" if diff.significant else "normal",
    )


def _wins_panel(ax, table: ComparisonTable) -> None:  # noqa: ANN001
    others = table.results[1:]
    primary = others[0].primary_metric
    counts = [table.win_loss_counts(r.name, metric=primary) for r in others]
    y = list(range(len(others)))[::-1]
    left = [0] * len(others)
    for key, color in (("better", "#3aa776"), ("same", "#d5d8dc"), ("worse", "#d9534f")):
        widths = [c[key] for c in counts]
        ax.barh(y, widths, left=left, color=color, label=key, height=0.6)
        for yi, lft, w in zip(y, left, widths, strict=True):
            if w:
                ax.text(lft + w / 2, yi, str(w), ha="center", va="center", fontsize=8)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(y, [textwrap.fill(r.name, 14) for r in others])
    ax.set_xlabel("queries")
    k = table.results[0].top_k
    title = f"per query vs {textwrap.shorten(table.baseline, 28)}\n({metric_label(primary, k)})"
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylim(-0.9, len(others) - 0.1 + 0.4)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper center", ncols=3, frameon=False, fontsize=8)


# -- the main job's report.md ----------------------------------------------------------------
