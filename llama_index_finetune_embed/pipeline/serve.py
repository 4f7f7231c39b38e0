"""Which of the report's rows the main job serves: the best one that loses nowhere.

The report scores four rows on the held-out questions (the base as LlamaIndex loads it, the base
in ``build_window_index``, the finetuned model plain and in windows) and the same four on the
packaged canary (questions people wrote about the Python FAQ). A row *really loses* on a set
when the paired-bootstrap 95% interval of its NDCG@10 difference to the first row (the status
quo) lies entirely below 0. The job serves, among the rows that really lose on neither set, the
one with the highest held-out NDCG@10 (the status quo itself is always a candidate; on a tie the
earlier row, the simpler one, wins). Data only: nothing here loads a model.
"""

from __future__ import annotations

from typing import Any

#: The metric the choice ranks rows by (and the guard judges by).
METRIC = "ndcg@10"
_WINDOWS = " + windows"


def served_form(row: str, base_row: str, current_row: str | None = None) -> dict[str, str]:
    """Which model (``"current"``: the one the user's index uses today, ``"base"``,
    ``"finetuned"``) and how (``"window"``/``"truncate"``) a row is."""
    if current_row is not None and row == current_row:
        return {"model": "current", "long_chunks": "truncate"}
    plain = row.removesuffix(_WINDOWS)
    return {
        "model": "base" if plain == base_row else "finetuned",
        "long_chunks": "window" if row.endswith(_WINDOWS) else "truncate",
    }


def pick_served(held_out: Any, canary: Any, *, base_row: str | None = None) -> dict[str, Any]:
    """The row to serve, with its form, the reason in one sentence, and every row's numbers.

    ``held_out`` and ``canary`` are :class:`~llama_index_finetune_embed.evaluate.ComparisonTable`
    objects with the same row names, the status quo first. ``base_row`` names the base model's
    plain row when the status quo is another model (the one the user's index uses today).

    Example:
        >>> served = pick_served(held_out_table, canary_table)  # doctest: +SKIP
        >>> served["row"], served["long_chunks"]  # doctest: +SKIP
        ('finetuned + windows', 'window')
    """
    base = held_out.baseline
    rows = {r.name: _row(held_out, canary, r.name) for r in held_out.results}
    eligible = [name for name, r in rows.items() if not (r["loses_held_out"] or r["loses_canary"])]
    best = max(eligible, key=lambda name: rows[name]["held_out"])  # first on ties
    mine = rows[best]
    excluded = [
        f"{name} (real loss on {' and '.join(_lost_on(r))})"
        for name, r in rows.items()
        if name not in eligible
    ]
    reason = (
        f"the best held-out NDCG@10 ({mine['held_out']:.1f}, "
        f"{mine['held_out_delta']:+.1f} [{mine['held_out_ci'][0]:+.1f}, "
        f"{mine['held_out_ci'][1]:+.1f}] against {base}) of the rows with no real loss on the "
        f"held-out questions or the canary (canary {mine['canary_delta']:+.1f})"
    )
    if excluded:
        reason += "; left out: " + ", ".join(excluded)
    current = base if base_row is not None and base_row != base else None
    form = served_form(best, base_row or base, current)
    return {"row": best, **form, "reason": reason, "metric": METRIC,
            "rows": rows}  # fmt: skip


def _row(held_out: Any, canary: Any, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, table in (("held_out", held_out), ("canary", canary)):
        result = table.result(name)
        out[key] = 100 * result.metrics[METRIC]
        if name == table.baseline:
            delta, lo, hi = 0.0, 0.0, 0.0
        else:
            diff = table.paired_diff(name, METRIC)
            delta, lo, hi = 100 * diff.delta, 100 * diff.ci[0], 100 * diff.ci[1]
        out[f"{key}_delta"], out[f"{key}_ci"] = delta, (lo, hi)
        out[f"loses_{key}"] = bool(hi < 0)
    return out


def _lost_on(row: dict[str, Any]) -> list[str]:
    return [what for what, key in (("held-out", "loses_held_out"), ("canary", "loses_canary"))
            if row[key]]  # fmt: skip
