"""The main job on an index a LlamaIndex user already has in PostgreSQL + pgvector (issue #34).

1. Starts a PostgreSQL with pgvector (the ``pgserver`` wheel, in ``--out/pg``) and builds the
   user's index the way LlamaIndex's docs build one: the pages of
   ``../shared/data/10k/uber_2021.pdf`` (read by ``load_documents``: see below),
   ``VectorStoreIndex.from_documents`` (its default SentenceSplitter) into a ``PGVectorStore``,
   embedded by the packaged all-MiniLM-L6-v2 as a plain ``HuggingFaceEmbedding``.
2. Runs ``finetune-embed run --from-store ... --current-model local:all-MiniLM-L6-v2
   --to-store ... --out OUT`` offline (the local LLM), then the same job with ``--out`` alone
   (a copy of OUT whose evaluate and index stages are redone: its JSON index).
3. Checks, for every held-out question: the new table (HNSW) against the JSON index (recall@10,
   same order), a table written with ``?hnsw=off`` (exact search) against it (same ids, same
   order); the source table's row count and checksum before and after; bytes per chunk.

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_store_job.py --out /tmp/storejob
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PDF = ROOT.parent / "shared" / "data" / "10k" / "uber_2021.pdf"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pdf", type=Path, default=PDF)
    args = parser.parse_args()
    import pgserver

    args.out.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(args.out / "pg", cleanup_mode="stop")
    socket = server.get_uri().split("host=", 1)[1]
    url = f"postgresql://postgres@/postgres?host={socket}&table="
    source, target = url + "uber", url + "uber_finetuned"
    t0 = time.perf_counter()
    chunks = build_user_index(socket, args.pdf)
    print(f"user's index: {chunks} chunks in PGVectorStore in {time.perf_counter() - t0:.0f} s")
    before = checksum(source)
    run = args.out / "run"
    t0 = time.perf_counter()
    job(run, "--from-store", source, "--to-store", target)
    print(f"job with --to-store: {time.perf_counter() - t0:.0f} s")
    alone = copy_without_index(run, args.out / "alone")
    t0 = time.perf_counter()
    job(alone, "--from-store", source)
    print(f"job with --out alone (evaluate + index redone): {time.perf_counter() - t0:.0f} s")
    compare(run, alone, target, url + "uber_exact")
    after = checksum(source)
    print(f"source rows/checksum before {before}, after {after}: "
          f"{'unchanged' if before == after else 'CHANGED'}")  # fmt: skip
    sizes(server, run, alone, chunks)
    return 0


def build_user_index(socket: str, pdf: Path) -> int:
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.postgres import PGVectorStore

    from llama_index_finetune_embed import load_documents
    from llama_index_finetune_embed.embeddings import packaged_minilm_path

    store = PGVectorStore.from_params(
        connection_string=f"postgresql+psycopg2://postgres@/postgres?host={socket}",
        async_connection_string=f"postgresql+asyncpg://postgres@/postgres?host={socket}",
        table_name="uber", embed_dim=384,
        hnsw_kwargs={"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40,
                     "hnsw_dist_method": "vector_cosine_ops"},
    )  # fmt: skip
    # This filing is AES-encrypted (empty password): SimpleDirectoryReader's PDF reader gave
    # binary noise for 1,081 of 1,192 chunks (and NUL bytes PostgreSQL refuses), so the pages
    # are read with the package's load_documents (pypdf + cryptography), one Document a page
    # as SimpleDirectoryReader makes them; the index is then built as LlamaIndex's docs do.
    docs = load_documents([pdf])
    embed_model = HuggingFaceEmbedding(model_name=str(packaged_minilm_path()))
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model, show_progress=True,
    )  # fmt: skip
    assert index is not None
    return sum(1 for _ in rows(socket, "uber"))


def rows(socket: str, table: str):
    from llama_index_finetune_embed.serving import open_store

    url = f"postgresql://postgres@/postgres?host={socket}&table={table}"
    for page in open_store(url).pages():
        yield from page


def checksum(url: str) -> tuple[int, str]:
    from llama_index_finetune_embed.serving import open_store

    entries = sorted(
        (n.node_id, n.get_content(), json.dumps(n.metadata, sort_keys=True), tuple(n.embedding))
        for page in open_store(url).pages() for n in page
    )  # fmt: skip
    return len(entries), hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def job(out: Path, *extra: str) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "finetune-embed"), "run", *extra, "--out", str(out),
           "--current-model", "local:all-MiniLM-L6-v2"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def copy_without_index(run: Path, alone: Path) -> Path:
    shutil.rmtree(alone, ignore_errors=True)
    shutil.copytree(run, alone, ignore=shutil.ignore_patterns("index", "run.lock", "pg"))
    state = json.loads((alone / "stages.json").read_text())
    for stage in ("evaluate", "index"):
        state["stages"].pop(stage, None)
    (alone / "stages.json").write_text(json.dumps(state))
    return alone


def compare(run: Path, alone: Path, target: str, exact_url: str) -> None:
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import load_window_index
    from llama_index_finetune_embed.serving import write_window_index

    val = json.loads((run / "val_dataset.json").read_text())
    questions = list(val["queries"].values())
    served = json.loads((run / "report.json").read_text())["served"]
    json_index = load_window_index(alone / "index")
    stored = load_window_index(run / "index")
    chunks = [TextNode.from_dict(c) for c in json.loads((run / "chunks.json").read_text())]
    t0 = time.perf_counter()
    exact = write_window_index(chunks, stored.embed_model, exact_url, alone / "exact_index",
                               long_chunks=served["long_chunks"])  # fmt: skip
    print(f"exact table written: {exact.entries} vectors in {time.perf_counter() - t0:.0f} s "
          f"({exact.entries / max(exact.seconds, 1e-9):.1f} vectors/s)")  # fmt: skip
    exact_index = load_window_index(alone / "exact_index")
    ranked = {name: [[h.node.node_id for h in ix.as_retriever(similarity_top_k=10).retrieve(q)]
                     for q in questions]
              for name, ix in (("json", json_index), ("hnsw", stored), ("exact", exact_index))}
    ref = ranked["json"]
    for name in ("exact", "hnsw"):
        same = sum(a == b for a, b in zip(ref, ranked[name], strict=True))
        recall = sum(len(set(a) & set(b)) for a, b in zip(ref, ranked[name], strict=True))
        print(f"{name} table vs the JSON index over {len(questions)} held-out questions: same ids "
              f"in the same order {same}/{len(questions)}, recall@10 "
              f"{recall / sum(len(a) for a in ref):.4f}")  # fmt: skip
    print(f"served: {served['row']} ({served['long_chunks']})")


def sizes(server, run: Path, alone: Path, chunks: int) -> None:
    out = server.psql(
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname LIKE 'data_uber%'"
        " AND relkind = 'r';"
    )
    print(out)
    counts = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    json_bytes = sum(p.stat().st_size for p in (alone / "index").glob("*.json"))
    stats = json.loads((run / "stages.json").read_text())["stages"]["index"]
    print(f"chunks {chunks}, window vectors {stats['vectors']}")
    for name, size in counts.items():
        print(f"  {name}: {size / 1e6:.1f} MB, {size / chunks / 1e3:.1f} kB per chunk")
    print(f"  JSON index (--out alone): {json_bytes / 1e6:.1f} MB, "
          f"{json_bytes / chunks / 1e3:.1f} kB per chunk")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
