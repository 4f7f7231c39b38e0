"""The main job serves what its report proved (#27): the choice of row and its report lines."""

from __future__ import annotations

import numpy as np

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate import ComparisonTable
from llama_index_finetune_embed.evaluate.results import QueryRow, RetrievalResult
from llama_index_finetune_embed.pipeline.report import _position_lines, _served_lines
from llama_index_finetune_embed.pipeline.serve import pick_served, served_form

BASE = "base (as LlamaIndex loads it)"
ROWS = (BASE, f"{BASE} + windows", "finetuned", "finetuned + windows")


def _result(name: str, values: np.ndarray) -> RetrievalResult:
    rows = [QueryRow(query_id=f"q{i}", query=f"q{i}", expected_ids=["c"], retrieved_ids=["c"],
                     metrics={"ndcg@10": float(v)}) for i, v in enumerate(values)]  # fmt: skip
    mean = float(values.mean())
    return RetrievalResult(name=name, top_k=10, method="fast", num_queries=len(values),
                           num_corpus=10, metrics={"ndcg@10": mean}, ci={"ndcg@10": (mean, mean)},
                           per_query=rows, primary_metric="ndcg@10")  # fmt: skip


def _table(shifts: dict[str, float], n: int = 200, seed: int = 0) -> ComparisonTable:
    """Four rows: the base's per-query scores, each other row shifted by ``shifts[row]``."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, n)
    noise = {name: rng.normal(0, 0.05, n) for name in ROWS}
    return ComparisonTable.from_results([
        _result(name, base if name == BASE else np.clip(base + shifts[name] + noise[name], 0, 1))
        for name in ROWS
    ])  # fmt: skip


def test_the_base_in_windows_is_served_when_it_beats_the_finetuned_model():
    held_out = _table({ROWS[1]: 0.10, ROWS[2]: 0.02, ROWS[3]: 0.05})
    canary = _table({ROWS[1]: 0.0, ROWS[2]: 0.0, ROWS[3]: 0.0}, seed=1)
    served = pick_served(held_out, canary)
    assert served["row"] == f"{BASE} + windows"
    assert (served["model"], served["long_chunks"]) == ("base", "window")
    assert "the best held-out NDCG@10" in served["reason"]
    assert set(served["rows"]) == set(ROWS)


def test_a_row_that_really_loses_on_the_canary_is_not_served():
    held_out = _table({ROWS[1]: 0.05, ROWS[2]: 0.02, ROWS[3]: 0.12})
    canary = _table({ROWS[1]: 0.0, ROWS[2]: 0.0, ROWS[3]: -0.10}, seed=1)
    served = pick_served(held_out, canary)
    assert served["row"] == f"{BASE} + windows"
    assert "left out: finetuned + windows (real loss on canary)" in served["reason"]
    assert served["rows"]["finetuned + windows"]["loses_canary"]


def test_the_finetuned_model_in_windows_when_it_is_best_and_loses_nowhere():
    held_out = _table({ROWS[1]: 0.05, ROWS[2]: 0.03, ROWS[3]: 0.09})
    canary = _table({ROWS[1]: 0.0, ROWS[2]: 0.01, ROWS[3]: 0.01}, seed=1)
    served = pick_served(held_out, canary)
    assert served["row"] == "finetuned + windows" and served["model"] == "finetuned"


def test_the_status_quo_when_every_other_row_loses():
    held_out = _table({ROWS[1]: -0.1, ROWS[2]: -0.1, ROWS[3]: -0.1})
    served = pick_served(held_out, _table(dict.fromkeys(ROWS[1:], 0.0), seed=1))
    assert served["row"] == BASE and served["long_chunks"] == "truncate"


def test_served_form_of_each_row():
    assert served_form("finetuned", BASE) == {"model": "finetuned", "long_chunks": "truncate"}
    assert served_form(f"{BASE} + windows", BASE) == {"model": "base", "long_chunks": "window"}


def test_the_report_says_what_it_serves_and_where_questions_point(tmp_path):
    served = pick_served(_table({ROWS[1]: 0.1, ROWS[2]: 0.0, ROWS[3]: 0.0}),
                         _table(dict.fromkeys(ROWS[1:], 0.0), seed=1))  # fmt: skip
    lines = _served_lines(served, tmp_path, "171 held-out questions (171 llm)")
    first = lines[0]
    assert first.startswith(f"**Served: {BASE} + windows**") and "load_window_index" in first
    assert first.endswith("Yardstick: 171 held-out questions (171 llm).")  # every verdict names it
    assert "questions analysts wrote" in lines[2]  # and what such verdicts carried over to
    spots = {"q0": {"passage": 0, "passages": 2, "start": 0, "end": 5},
             "q1": {"passage": 1, "passages": 2, "start": 6, "end": 9}}  # fmt: skip
    ds = EmbeddingQAFinetuneDataset(
        queries={"q0": "What is a?", "q1": "What is b?"}, corpus={"c": "aaaaa bbb"},
        relevant_docs={"q0": ["c"], "q1": ["c"]}, query_positions=spots,
    )  # fmt: skip
    old = EmbeddingQAFinetuneDataset(queries={"q": "Who?"}, corpus={"c": "t"},
                                     relevant_docs={"q": ["c"]})  # fmt: skip
    train_line, val_line = _position_lines(ds, old)
    assert train_line == ("- where training pairs point: 50% of the 2 about chunks of 2+ passages "
                          "ask about the first passage (an even spread: 50%)")  # fmt: skip
    assert val_line == "- where held-out questions point: not recorded"
