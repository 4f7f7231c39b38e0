"""Offline smoke tests of the examples (tiny model, toy corpus, scripted or fake LLMs)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _corpus import TOPICS, write_docs
from _fake_openai import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_rows(text: str) -> dict[str, list[float]]:
    """``| name | 0.1 | 0.2 |`` lines -> {name: [0.1, 0.2]} (header lines skipped)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and all(re.fullmatch(r"\d\.\d{4}", c) for c in cells[1:]):
            rows.setdefault(cells[0], []).append([float(c) for c in cells[1:]])
    return rows


@pytest.fixture
def published(tmp_path) -> Path:
    """Published CSVs in the tutorial's column layout, with recognisable numbers."""
    folder = tmp_path / "published"
    folder.mkdir()
    cols = ["cos_sim-Accuracy@5", "cos_sim-MRR@10", "cos_sim-NDCG@10", "dot_score-MRR@10"]
    for which, values in {
        "base": "0.1111,0.2222,0.3333,0.9",
        "finetuned": "0.4444,0.5555,0.6666,0.9",
    }.items():
        (folder / f"published_bge_small_en_{which}.csv").write_text(
            "epoch,steps," + ",".join(cols) + f"\n-1,-1,{values}\n"
        )
    return folder


# -- reproduce_tutorial.py --------------------------------------------------------------------


@pytest.mark.slow
def test_tutorial_generates_with_an_openai_llm_and_prints_both_tables(
    tmp_path, tiny_model_path, published, monkeypatch, capsys
):
    train_docs = write_docs(tmp_path / "lyft", dict(list(TOPICS.items())[:4]), notes=5)
    val_docs = write_docs(tmp_path / "uber", dict(list(TOPICS.items())[4:]), notes=5)
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        code = _load("reproduce_tutorial").main([
            "--train-docs", str(train_docs), "--val-docs", str(val_docs),
            "--llm", "openai:gpt-3.5-turbo",
            "--base-model", str(tiny_model_path), "--epochs", "1", "--batch-size", "4",
            "--max-seq-length", "128",
            "--compare-openai", "no", "--published", str(published), "--out", str(tmp_path / "o"),
        ])  # fmt: skip
    assert code == 0
    assert sum(server.snapshot()["successes"].values()) >= 6  # a call per chunk at least
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert all(line.endswith(" |") for line in out.splitlines() if line.startswith("| "))
    # table 1 (hit-rate, MRR) and table 2 (three evaluator columns) for both models
    assert [len(r) for r in rows["base"]] == [len(r) for r in rows["finetuned"]] == [2, 3]
    assert rows["published bge-small-en base"] == [[0.1111, 0.2222, 0.3333]]
    assert rows["published bge-small-en finetuned"] == [[0.4444, 0.5555, 0.6666]]
    assert (tmp_path / "o" / "model" / "modules.json").is_file()
    assert (tmp_path / "o" / "val_dataset.json").is_file()


def test_tutorial_needs_both_json_files_or_neither(capsys):
    with pytest.raises(SystemExit):
        _load("reproduce_tutorial").main(["--train", "train.json"])
    assert "pass both --train and --val" in capsys.readouterr().err


# -- existing_index.py ------------------------------------------------------------------------


@pytest.mark.slow
def test_existing_index_runs_the_main_job_on_its_chunks(tmp_path, tiny_model_path, capsys):
    """The example calls what ``finetune-embed run --from-index`` calls: the report's first row
    is the index's own model, scored on its stored vectors; the user's index is left as it was."""
    import json

    docs = write_docs(tmp_path / "docs", TOPICS, notes=5)
    storage, out = tmp_path / "storage", tmp_path / "out"
    common = [
        "--persist-dir", str(storage), "--current-model", str(tiny_model_path), "--llm", "none",
        "--epochs", "1", "--batch-size", "2", "--val-ratio", "0.34", "--out", str(out),
    ]  # fmt: skip
    module = _load("existing_index")
    assert module.main(["--docs", str(docs), *common]) == 0
    printed = capsys.readouterr().out
    assert "no index in" in printed  # the first run had to build the "existing" index
    assert f"| today: {tiny_model_path} |" in printed
    report = (out / "report.md").read_text()
    assert "scored on the vectors the source index holds" in report
    assert "Q: " in printed and re.search(r"\[\d\.\d{3}\] ", printed)  # sources listed
    chunks = {c["id_"] for c in json.loads((out / "chunks.json").read_text())}
    persisted = json.loads((storage / "docstore.json").read_text())
    assert chunks == set(persisted["docstore/data"])  # its chunks, not re-chunked
    old_vectors = (storage / "default__vector_store.json").read_text()

    # a second run loads the persisted index as it is and reuses every stage
    assert module.main([*common, "--docs", str(tmp_path / "missing")]) == 0
    printed = capsys.readouterr().out
    assert "no index in" not in printed and "index: reused (inputs unchanged)" in printed
    assert (storage / "default__vector_store.json").read_text() == old_vectors


# -- rag_query_engine.py ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def finetuned_dir(tmp_path_factory, _tiny_model_master) -> Path:
    """A model directory written by the engine (one quick epoch), with a saved query prompt."""
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import (
        EmbeddingQAFinetuneDataset,
        SentenceTransformersFinetuneEngine,
    )

    nodes = [TextNode(id_=name, text=text) for name, text in TOPICS.items()]
    questions = {n.node_id: [f"what about {n.node_id}?"] for n in nodes}
    train = EmbeddingQAFinetuneDataset.from_nodes(nodes, questions)
    out = tmp_path_factory.mktemp("rag") / "finetuned"
    SentenceTransformersFinetuneEngine(
        train, model_id=str(_tiny_model_master), model_output_path=out, batch_size=4,
        query_prompt="query: ",
    ).finetune()  # fmt: skip
    return out


@pytest.fixture
def restore_settings():
    """The example sets LlamaIndex's global Settings; put them back for the other tests."""
    from llama_index.core import Settings

    saved = Settings._embed_model, Settings._llm
    yield
    Settings._embed_model, Settings._llm = saved


@pytest.mark.slow
def test_rag_example_serves_the_finetuned_dir_in_a_fresh_process(tmp_path, finetuned_dir):
    docs = write_docs(tmp_path / "docs", TOPICS, notes=5)
    with FakeOpenAIServer() as server:
        env = {
            **os.environ,
            "OPENAI_API_KEY": "test",
            "OPENAI_API_BASE": server.url,
            "HF_HUB_OFFLINE": "1",
        }
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "rag_query_engine.py"),
             "--model", str(finetuned_dir), "--docs", str(docs), "--llm", "openai:gpt-4o-mini",
             "--question", "Who covers auto liability?", "--question", "Where do bikes go?",
             "--top-k", "2"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "indexed 6 chunks" in proc.stdout and "(query prompt 'query: ')" in proc.stdout
    assert proc.stdout.count("\nQ: ") == 2 and proc.stdout.count("\nA: ") == 2
    assert len(re.findall(r"\[\d\.\d{3}\] \w+\.md: ", proc.stdout)) == 4  # top-2 sources each
    assert sum(server.snapshot()["successes"].values()) == 2  # one answer per question


def test_rag_example_plain_huggingface_embedding_retrieval_only(
    tmp_path, finetuned_dir, restore_settings, capsys
):
    docs = write_docs(tmp_path / "docs", TOPICS, notes=5)
    argv = ["--model", str(finetuned_dir), "--plain", "--docs", str(docs), "--llm", "none",
            "--question", "What about insurance?"]  # fmt: skip
    assert _load("rag_query_engine").main(argv) == 0
    out = capsys.readouterr().out
    assert "(query prompt '')" in out  # plain HuggingFaceEmbedding: the saved prompt is not used
    assert "\nA: " not in out and len(re.findall(r"\[\d\.\d{3}\] \w+\.md: ", out)) == 3


def test_rag_example_rejects_a_directory_without_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _load("rag_query_engine").main(["--model", str(tmp_path)])
    assert "no modules.json" in capsys.readouterr().err


def test_examples_help_runs_without_heavy_imports():
    for name in ("reproduce_tutorial", "existing_index", "rag_query_engine"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
