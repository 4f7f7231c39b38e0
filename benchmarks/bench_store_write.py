"""The write path alone: ``write_window_index`` into PostgreSQL + pgvector, rows/s and peak RSS.

A fast stand-in embed model (a hash of the text seeds a unit vector, 384 dimensions: what
all-MiniLM-L6-v2 writes) so only the write is timed: the chunks come from a generator (nothing
kept), each batch is asked which ids the table holds, then added through ``PGVectorStore.add``.
Each size runs in a fresh process (its own peak RSS); the HNSW index is built after the rows
and timed on its own.

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_store_write.py --sizes 10000 100000
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_store_write.py --sizes 1000000 --no-hnsw
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DIM = 384


def fast_embed_model():
    """A LlamaIndex embed model that costs almost nothing: the text's hash seeds its vector."""
    import numpy as np
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class HashEmbedding(BaseEmbedding):
        def _vector(self, text: str) -> list[float]:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            v = np.random.default_rng(seed).standard_normal(DIM)
            return (v / np.linalg.norm(v)).tolist()

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._vector(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._vector(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._vector(text)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [self._vector(t) for t in texts]

    return HashEmbedding(model_name="hash-384", embed_batch_size=256)


def chunks(n: int):
    """``n`` chunks of about 60 words, each one window, made as they are consumed."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from llama_index_finetune_embed._io import stable_id

    words = ("revenue drivers riders growth loss insurance city platform regulation market "
             "share trips pandemic freight delivery").split()  # fmt: skip
    for i in range(n):
        text = " ".join(words[(i * 7 + j) % len(words)] for j in range(60)) + f" chunk {i}."
        yield TextNode(
            id_=stable_id("bench", str(i)), text=text,
            metadata={"file_name": f"filing{i // 500}.pdf", "page_label": str(i % 300)},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i // 500}")},
        )  # fmt: skip


def one(size: int, url: str, out: Path) -> dict:
    from llama_index_finetune_embed.serving import open_store, write_window_index

    t0 = time.perf_counter()
    stats = write_window_index(chunks(size), fast_embed_model(), url, out, total=size,
                               show_progress=False)  # fmt: skip
    store = open_store(url)
    return {
        "chunks": size, "rows": stats.entries, "seconds": round(time.perf_counter() - t0, 1),
        "rows_per_s": round(stats.entries / (stats.seconds - stats.index_seconds), 1),
        "hnsw_s": round(stats.index_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "store": store.url.redacted,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-hnsw", action="store_true", help="exact-search tables only")
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, url, out = args.child
        print(json.dumps(one(int(size), url, Path(out))))
        return 0
    import pgserver

    work = Path(tempfile.mkdtemp(prefix="bench_store_write_"))
    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    socket = server.get_uri().split("host=", 1)[1]
    print("| chunks (one window each) | rows | in all, s | rows/s (write) | HNSW build, s | "
          "peak RSS MB | table MB |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for size in args.sizes:
        hnsw = "&hnsw=off" if args.no_hnsw else ""
        url = f"postgresql://postgres@/postgres?host={socket}&table=w{size}{hnsw}"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(size), url, str(work / f"out{size}")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        mb = server.psql(f"SELECT pg_total_relation_size('data_w{size}');").split()[2]
        print(f"| {size:,} | {row['rows']:,} | {row['seconds']} | {row['rows_per_s']:,} | "
              f"{row['hnsw_s']} | {row['peak_rss_mb']:,} | {int(mb) / 1e6:,.1f} |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
