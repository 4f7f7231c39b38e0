"""The main job on an index the user already has: read from its store (or persist dir), the model
it uses today as the first row, the chosen index written beside it into a real database."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter

from llama_index_finetune_embed import load_embed_model, load_window_index
from llama_index_finetune_embed.cli import main
from llama_index_finetune_embed.serving import open_store, parse_store_url

pytestmark = pytest.mark.slow


def _user_index(corpus: Path, model_path: Path, vector_store=None) -> list:
    """The user's index, built the way LlamaIndex's docs build one: their own splitter, their
    model, a ``VectorStoreIndex`` over a vector store (or the default one)."""
    docs = SimpleDirectoryReader(str(corpus)).load_data()
    nodes = SentenceSplitter(chunk_size=96, chunk_overlap=8).get_nodes_from_documents(docs)
    storage = StorageContext.from_defaults(vector_store=vector_store) if vector_store else None
    index = VectorStoreIndex(nodes, storage_context=storage,
                             embed_model=load_embed_model(str(model_path)))  # fmt: skip
    return nodes, index


def _job(out: Path, model: Path, *source: str) -> list[str]:
    return ["run", *source, "--out", str(out), "--llm", "openai:gpt-4o-mini", "--base-model",
            str(model), "--current-model", str(model), "--epochs", "1", "--batch-size", "4",
            "--val-ratio", "0.3"]  # fmt: skip


def _checksum(url: str) -> tuple[int, str]:
    """Row count and a hash of every row (id, text, metadata, vector) of a table/collection."""
    rows = sorted(
        (n.node_id, n.get_content(), json.dumps(n.metadata, sort_keys=True),
         tuple(round(x, 6) for x in n.embedding))
        for page in open_store(url).pages() for n in page
    )  # fmt: skip
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def _held_out_rankings(index_dir: Path, out: Path) -> list[list[str]]:
    val = json.loads((out / "val_dataset.json").read_text())
    retriever = load_window_index(index_dir).as_retriever(similarity_top_k=5)
    return [[h.node.node_id for h in retriever.retrieve(q)] for q in val["queries"].values()]


def _json_index_of(out: Path, tmp_path: Path, model: Path) -> Path:
    """The index the same job writes with ``--out`` alone: a copy of the run without
    ``--to-store`` (its earlier stages reused, the index stage redone into DIR/index)."""
    alone = tmp_path / "alone"
    shutil.copytree(out, alone, ignore=shutil.ignore_patterns("index", "run.lock"))
    state = json.loads((alone / "stages.json").read_text())
    for stage in ("evaluate", "index"):
        state["stages"].pop(stage, None)
    (alone / "stages.json").write_text(json.dumps(state))
    return alone


def test_finetune_a_pgvector_index_and_write_the_better_one_beside_it(
    corpus, server, tiny_model_path, tmp_path, pg_url, capsys
):
    from llama_index.vector_stores.postgres import PGVectorStore

    socket = parse_store_url(pg_url("x")).socket_dir
    source, target = pg_url("chunks"), pg_url("chunks_finetuned")
    store = PGVectorStore.from_params(
        connection_string=f"postgresql+psycopg2://postgres@/postgres?host={socket}",
        async_connection_string=f"postgresql+asyncpg://postgres@/postgres?host={socket}",
        table_name=parse_store_url(source).name, embed_dim=32,
    )  # fmt: skip
    nodes, _ = _user_index(corpus, tiny_model_path, store)
    before = _checksum(source)

    out = tmp_path / "run"
    assert main([*_job(out, tiny_model_path, "--from-store", source), "--to-store", target]) == 0
    printed = capsys.readouterr().out
    chunks = json.loads((out / "chunks.json").read_text())
    assert sorted(c["id_"] for c in chunks) == sorted(n.node_id for n in nodes)  # not re-chunked
    report = (out / "report.md").read_text()
    rows = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]
    assert rows[1] == f"today: {tiny_model_path}"  # the model the index uses today comes first
    assert "scored on the vectors the source index holds, only the questions embedded" in report
    assert f'index = load_window_index("{out / "index"}")' in report
    assert "## Switch to it" in report or "keep your index as it is" in report
    redacted = parse_store_url(target).redacted
    assert redacted in report and redacted in printed
    assert _checksum(source) == before  # the source is never written to

    stored = _held_out_rankings(out / "index", out)  # the new table, loaded as report.md says
    entries = json.loads((out / "stages.json").read_text())["stages"]["index"]["vectors"]
    assert _checksum(target)[0] == entries
    alone = _json_index_of(out, tmp_path, tiny_model_path)
    args = _job(alone, tiny_model_path, "--from-store", source)
    assert main(args) == 0
    assert (alone / "index" / "default__vector_store.json").is_file()  # the JSON index
    assert stored == _held_out_rankings(alone / "index", alone)  # same chunks, same order

    # a rerun with unchanged inputs reuses every stage and writes nothing
    calls = server.snapshot()["requests"]
    assert main([*_job(out, tiny_model_path, "--from-store", source), "--to-store", target]) == 0
    assert "index: reused (inputs unchanged)" in capsys.readouterr().out
    assert server.snapshot()["requests"] == calls and _checksum(target)[0] == entries


def test_a_job_killed_while_writing_to_postgres_resumes(
    corpus, server, tiny_model_path, tmp_path, pg_url
):
    """SIGKILL in the middle of the write (the third batch half sent); the rerun leaves exactly
    one row per window, and the table retrieves as the index built in one go."""
    from llama_index.vector_stores.postgres import PGVectorStore

    source_dir = tmp_path / "persisted"
    _, index = _user_index(corpus, tiny_model_path)
    index.storage_context.persist(str(source_dir))
    target, out = pg_url("killed"), tmp_path / "run"
    args = [*_job(out, tiny_model_path, "--from-index", str(source_dir)), "--to-store", target]
    script = textwrap.dedent(f"""
        import os, signal, sys
        from llama_index.vector_stores.postgres import PGVectorStore
        from llama_index_finetune_embed.serving import stores
        from llama_index_finetune_embed.cli import main
        stores.WRITE_BATCH = 2
        adds, real_add, real_row = [], PGVectorStore.add, PGVectorStore._node_to_table_row
        def add(self, nodes, **kw):
            adds.append(len(nodes))
            return real_add(self, nodes, **kw)
        def row(self, node):
            if len(adds) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_row(self, node)
        PGVectorStore.add, PGVectorStore._node_to_table_row = add, row
        sys.exit(main({args!r}))
    """)  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": "test", "OPENAI_API_BASE": server.url}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    partial = _checksum(target)[0]
    assert partial > 0  # two batches were in before the kill

    assert main(args) == 0  # the rerun: every earlier stage reused, the write resumed
    state = json.loads((out / "stages.json").read_text())["stages"]["index"]
    assert state["written"] == state["vectors"] - partial
    ids = [n.node_id for page in open_store(target).pages() for n in page]
    assert len(ids) == len(set(ids)) == state["vectors"]  # one row per window
    # the table retrieves exactly what the index built in one go does
    from llama_index_finetune_embed import build_window_index, load_finetuned_model

    served = json.loads((out / "report.json").read_text())["served"]
    model = (load_finetuned_model(out / "model") if served["model"] == "finetuned"
             else load_embed_model(str(tiny_model_path)))  # fmt: skip
    from llama_index.core.schema import TextNode

    chunks = [TextNode.from_dict(c) for c in json.loads((out / "chunks.json").read_text())]
    build_window_index(chunks, model, long_chunks=served["long_chunks"]).persist(tmp_path / "ref")
    assert _held_out_rankings(out / "index", out) == _held_out_rankings(tmp_path / "ref", out)
    assert PGVectorStore  # imported for the subprocess's patch only


@pytest.mark.parametrize("kind", ["qdrant", "chroma"])
def test_the_same_job_on_qdrant_and_chroma(kind, corpus, server, tiny_model_path, tmp_path):
    source = f"{kind}:{tmp_path / kind}?collection=chunks"
    target = f"{kind}:{tmp_path / kind}?collection=chunks_finetuned"
    store = open_store(source, write=True, dim=32)
    nodes, _ = _user_index(corpus, tiny_model_path, store.vector_store)
    before = _checksum(source)
    out = tmp_path / "run"
    assert main([*_job(out, tiny_model_path, "--from-store", source), "--to-store", target]) == 0
    assert _checksum(source) == before
    report = (out / "report.md").read_text()
    assert f"| today: {tiny_model_path} |" in report
    assert "scored on the vectors the source index holds" in report
    stored = _held_out_rankings(out / "index", out)
    alone = _json_index_of(out, tmp_path, tiny_model_path)
    assert main(_job(alone, tiny_model_path, "--from-store", source)) == 0
    assert stored == _held_out_rankings(alone / "index", alone)


def test_from_index_reads_a_persist_dir_and_refuses_bad_combinations(
    corpus, server, tiny_model_path, tmp_path, capsys
):
    source_dir = tmp_path / "persisted"
    nodes, index = _user_index(corpus, tiny_model_path)
    index.storage_context.persist(str(source_dir))
    out = tmp_path / "run"
    assert main(["run", str(corpus), "--from-index", str(source_dir), "--out", str(out)]) == 1
    assert "give no documents with it" in capsys.readouterr().err
    assert main(["run", "--from-index", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert "no such folder" in capsys.readouterr().err
    store = f"qdrant:{tmp_path / 'q'}?collection=chunks"
    assert main(["run", "--from-store", store, "--to-store", store, "--out", str(out)]) == 1
    assert "never writes into its source" in capsys.readouterr().err

    assert main(_job(out, tiny_model_path, "--from-index", str(source_dir))) == 0
    chunks = json.loads((out / "chunks.json").read_text())
    assert sorted(c["id_"] for c in chunks) == sorted(n.node_id for n in nodes)
    assert all(c.get("embedding") is None for c in chunks)
    report = (out / "report.md").read_text()
    assert f"the chunks of the index in {source_dir}" in report
    assert "scored on the vectors the source index holds" in report


def test_an_api_model_as_the_current_model(corpus, server, tiny_model_path, tmp_path, capsys):
    """``openai:text-embedding-3-small`` against the local OpenAI-compatible server: its row in
    the report, its calls, tokens and cost in the dry run."""
    source_dir = tmp_path / "persisted"
    _, index = _user_index(corpus, tiny_model_path)  # its vectors are the tiny model's
    index.storage_context.persist(str(source_dir))
    out = tmp_path / "run"
    args = [*_job(out, tiny_model_path, "--from-index", str(source_dir))]
    args[args.index("--current-model") + 1] = "openai:text-embedding-3-small"
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "current model (the report's first row;" in printed
    assert "model: text-embedding-3-small" in printed and "calls" in printed
    assert "tokens:" in printed and "cost: $" in printed and "total cost: $" in printed
    assert not out.exists() or not (out / "report.md").exists()
    before = len(server.embedded)

    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "| today: openai:text-embedding-3-small |" in report
    # the source holds another model's vectors (dimension 32): the row embeds the chunks itself
    assert "embedded as LlamaIndex embeds with it (the source's vectors have dimension" in report
    assert len(server.embedded) > before  # the row really asked the server
