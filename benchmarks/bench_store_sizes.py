"""Bytes per chunk in each store: one vector per chunk, windows, windows with ``&text=once``.

Writes the chunks of a run (``--chunks DIR/chunks.json``) with ``write_window_index`` into
PostgreSQL + pgvector (``pg_total_relation_size``: rows, TOAST, the node_id and HNSW indexes),
Qdrant local mode and Chroma (the size of their folders), once in windows of ``--window`` tokens
once as one entry per chunk (``long_chunks="truncate"``) and once in windows with the text
stored with each chunk's first window only (``&text=once``), and prints bytes per chunk and the
ratio to one entry per chunk. A window's entry holds its chunk's text and metadata (so any
reader of the store gets chunks back), so windows multiply the text by the windows per chunk.
The embed model is a fast stand-in of all-MiniLM-L6-v2's dimension (384): the vectors' size is
what matters here.

Usage::

    .venv/bin/python benchmarks/bench_store_sizes.py --chunks /tmp/storejob/run/chunks.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=Path, required=True)
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()
    import pgserver
    from bench_store_write import fast_embed_model
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.serving import write_window_index

    nodes = [TextNode.from_dict(d) for d in json.loads(args.chunks.read_text())]
    text_bytes = sum(len(n.get_content().encode()) for n in nodes)
    work = Path(tempfile.mkdtemp(prefix="bench_store_sizes_"))
    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    socket = server.get_uri().split("host=", 1)[1]
    model = fast_embed_model()
    print(f"{len(nodes)} chunks, {text_bytes / len(nodes) / 1e3:.2f} kB of text per chunk")
    print("| store | layout | entries | kB per chunk | windows / one per chunk |")
    print("|:--|:--|--:|--:|--:|")
    for kind in ("postgres", "qdrant", "chroma"):
        sizes = {}
        for layout in ("truncate", "window", "window_once"):
            name = f"s_{layout}"
            url = {
                "postgres": f"postgresql://postgres@/postgres?host={socket}&table={name}",
                "qdrant": f"qdrant:{work / ('qdrant_' + layout)}?collection={name}",
                "chroma": f"chroma:{work / ('chroma_' + layout)}?collection={name}",
            }[kind] + ("&text=once" if layout == "window_once" else "")
            stats = write_window_index(nodes, model, url, work / f"idx_{kind}_{layout}",
                                       long_chunks=layout.split("_")[0],
                                       window_tokens=args.window)  # fmt: skip
            if kind == "postgres":
                size = int(server.psql(f"SELECT pg_total_relation_size('data_{name}');").split()[2])
            else:
                from llama_index_finetune_embed.serving.stores import _close_qdrant_clients

                _close_qdrant_clients()
                size = folder_bytes(work / f"{kind}_{layout}")
            sizes[layout] = size
            ratio = "" if layout == "truncate" else f"{size / sizes['truncate']:.2f}x"
            print(f"| {kind} | {layout} | {stats.entries:,} | {size / len(nodes) / 1e3:.1f} | "
                  f"{ratio} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
