"""Rendering: the markdown report, the PNG chart of a comparison, the main job's report.md."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate import (
    ComparisonTable,
    DatasetEmbeddings,
    evaluate_embeddings,
)
from llama_index_finetune_embed.evaluate.report import (
    headline_metrics,
    metric_label,
    plot_comparison,
    render_markdown,
)
from llama_index_finetune_embed.pipeline.report import render_run_report


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and chunk type."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", "PNG chunks missing"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def table() -> ComparisonTable:
    """base (noisy queries) vs better (less noisy) vs same (base again) on 300 synthetic queries."""
    rng = np.random.default_rng(0)
    n = 300
    corpus = rng.normal(size=(n, 16))
    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"question number {i}?" for i in range(n)},
        corpus={f"c{i}": f"chunk {i}" for i in range(n)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(n)},
    )
    noisy = corpus + rng.normal(size=corpus.shape) * 1.5
    better = corpus + rng.normal(size=corpus.shape) * 0.9
    results = [
        evaluate_embeddings(ds, DatasetEmbeddings(q, corpus), name=name, n_resamples=500)
        for name, q in (("base", noisy), ("better", better), ("same", noisy))
    ]
    return ComparisonTable.from_results(results)


def test_plot_writes_a_non_empty_png(table, tmp_path):
    import matplotlib.image

    out = table.plot(tmp_path / "sub" / "report.png")
    assert out == tmp_path / "sub" / "report.png"
    assert _png_size(out) == (1650, 720)  # 11 x 4.8 inches at 150 dpi: bars + wins panel
    assert out.stat().st_size > 20_000
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 1000
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    assert not list(out.parent.glob("*_part"))


def test_plot_single_model_and_chosen_metrics(table, tmp_path):
    one = ComparisonTable.from_results(table.results[:1])
    out = plot_comparison(one, tmp_path / "one.png", metrics=["accuracy@1", "map@100"])
    assert _png_size(out) == (1200, 720)  # 8 x 4.8 inches: one panel, no wins panel
    assert out.stat().st_size > 10_000


def test_markdown_has_intervals_deltas_verdicts_and_examples(table):
    md = table.to_markdown()
    assert md == render_markdown(table)
    lines = md.splitlines()
    assert lines[0].startswith("Retrieval on 300 queries over 300 chunks, top_k=5.")
    assert "brackets: 95% bootstrap interval (500 resamples of the queries)" in lines[0]
    assert "(+d): difference to base." in lines[0]
    header = next(line for line in lines if line.startswith("| model |"))
    assert header == "| model | hit@5 | MRR@5 | MRR@10 | NDCG@10 |"
    rows = lines[lines.index(header) + 2 : lines.index(header) + 5]
    assert [r.split(" | ")[0] for r in rows] == ["| base", "| better", "| same"]  # base first
    assert "(+" not in rows[0] and "(-" not in rows[0]  # no difference to itself
    assert all(r.count("[") == 4 for r in rows)  # an interval in every metric column
    base_row = next(line for line in lines if line.startswith("| base |"))
    hit = table.result("base").metrics["hit_rate"]
    lo, hi = table.result("base").ci["hit_rate"]
    assert f"**{100 * hit:.1f}** [{100 * lo:.1f}, {100 * hi:.1f}]" in base_row
    better_row = next(line for line in lines if line.startswith("| better |"))
    assert f"({100 * table.deltas['better']['hit_rate']:+.1f})" in better_row
    assert "**better vs base**" in md and "real gain" in md
    assert "**same vs base**" in md and "no clear difference" in md
    counts = table.win_loss_counts("better", metric="mrr")
    assert f"better better on {counts['better']}, worse on {counts['worse']}" in md
    assert "Biggest wins:" in md and '"question number' in md
    assert "| model | acc@1 | acc@3 | acc@5 | acc@10 | MRR@10 | NDCG@10 | MAP@100 |" in md


def test_markdown_states_its_resolution(table):
    """The width of the paired interval, so a reader knows which differences it can show."""
    md = table.to_markdown()
    d = table.paired_diff("better", "mrr")
    half = 100 * (d.ci[1] - d.ci[0]) / 2
    assert f"Resolution: with 300 queries the interval of the MRR@5 difference is ±{half:.1f}" in md
    assert 0.5 < half < 20


def test_single_result_markdown_has_no_comparison(table):
    md = table.results[0].to_markdown()
    assert "| base |" in md and " vs " not in md


def test_metric_labels_and_unknown_metric(table):
    assert [metric_label(m, 5) for m in ("hit_rate", "mrr", "ndcg", "mrr@10", "accuracy@1")] == [
        "hit@5",
        "MRR@5",
        "NDCG@5",
        "MRR@10",
        "acc@1",
    ]
    assert headline_metrics(table) == ["hit_rate", "mrr", "mrr@10", "ndcg@10"]
    with pytest.raises(ValueError, match="unknown metrics"):
        render_markdown(table, metrics=["hit@5"])


def test_no_column_twice_at_top_k_10():
    """Issue #14, item 9: at top_k=10 "mrr" and "mrr@10" are both MRR@10: one column."""
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(40, 8))
    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"question {i}?" for i in range(40)},
        corpus={f"c{i}": f"chunk {i}" for i in range(40)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(40)},
    )
    results = [
        evaluate_embeddings(ds, DatasetEmbeddings(corpus + rng.normal(size=corpus.shape) * s,
                                                  corpus), name=name, top_k=10, n_resamples=50)
        for name, s in (("base", 1.5), ("tuned", 0.9))
    ]
    table = ComparisonTable.from_results(results)
    assert headline_metrics(table) == ["hit_rate", "mrr", "ndcg@10"]
    for line in table.to_markdown().splitlines():
        if line.startswith("| model |") or line.startswith("| metric |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert len(cells) == len(set(cells)), line
    header = next(line for line in table.to_markdown().splitlines() if line.startswith("| model"))
    assert header == "| model | hit@10 | MRR@10 | NDCG@10 |"
    paired = [line.split("|")[1].strip() for line in table.to_markdown().splitlines()
              if line.startswith("| ") and "@10" in line.split("|")[1]]
    assert sorted(paired) == sorted(set(paired))  # the paired rows: each metric once


def test_to_dict_is_json_and_small_without_rows(table):
    import json

    data = json.loads(json.dumps(table.to_dict()))
    assert data["baseline"] == "base"
    assert "per_query" not in data["results"][0]
    assert data["win_loss"]["same"] == {"better": 0, "worse": 0, "same": 300}
    assert {d["model"] for d in data["paired"]} == {"better", "same"}


def test_results_at_different_top_k_are_refused(table):
    other = table.results[1].model_copy(update={"top_k": 10})
    with pytest.raises(ValueError, match="same top_k"):
        ComparisonTable.from_results([table.results[0], other])


def test_run_report_says_what_was_run_then_the_table(table, tmp_path):
    """The main job's report.md: inputs and choices first, then the table and the chart."""
    ds = EmbeddingQAFinetuneDataset(
        queries={"q1": "a?", "q2": "b?"},
        corpus={"c1": "chunk a", "c2": "chunk b"},
        relevant_docs={"q1": ["c1"], "q2": ["c2"]},
        query_sources={"q1": "llm", "q2": "pseudo"},
    )
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "metrics.json").write_text(json.dumps({}))
    ledger = {"chunks": {"chunks": 10}, "split": {"train": 8, "val": 2}}
    config = SimpleNamespace(docs=["notes/"], base_model="local:all-MiniLM-L6-v2")
    choices = SimpleNamespace(llm="none", llm_reason="asked", base_model_reason="default")
    md = render_run_report(table, ds, ds, choices, config, ledger, tmp_path)
    lines = md.splitlines()
    assert lines[0] == "# finetune-embed report"
    assert "- documents: notes/ -> 10 chunks (8 train / 2 held out, split by chunk)" in lines
    assert "- training pairs: 2 (1 llm, 1 pseudo)" in lines
    assert "- held-out questions: 2 (1 llm, 1 pseudo) over 2 chunks" in lines
    assert "- guard: off" in lines
    assert any(line.startswith("- only 2 held-out questions") for line in lines)
    assert table.to_markdown() in md
    assert md.index("# finetune-embed report") < md.index("| model |") < md.index("![base vs")


def test_copied_sentence_questions_get_a_caveat():
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.pipeline.report import _copied_sentences_note

    ds = EmbeddingQAFinetuneDataset(
        queries={"a": "Riders ride.", "b": "Who drives?"}, corpus={"c": "Riders ride. Drivers."},
        relevant_docs={"a": ["c"], "b": ["c"]}, query_sources={"a": "ict", "b": "llm"},
    )  # fmt: skip
    assert "1 of the held-out" in _copied_sentences_note(ds)[0]
    ds.query_sources["a"] = "llm"
    assert _copied_sentences_note(ds) == []
