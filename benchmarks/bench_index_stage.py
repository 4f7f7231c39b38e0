"""The index stage's peak RSS at 10k and 100k chunks: the job's own stage code, writing to pgvector.

Each size gets a run folder holding what the chunks and split stages leave (``chunks.json``, one
chunk a line, and ``split.json``), then a fresh process does what a resumed job does for the
index stage: ``load_chunks`` and ``load_split`` (the job's ``ChunkFile``), then ``make_index``
with ``--to-store`` a PostgreSQL table. Only the served model is replaced, by the hash stand-in
of ``bench_store_write.py`` (384 dimensions; a real model's memory does not depend on the corpus,
and leaving it out makes the comparison stricter). Prints the peak RSS before the stage (imports,
the chunk offsets, the split) and after it, per size, and their ratio.

Usage (``--code DIR``: the measured process runs another checkout's stage code, e.g. a
``git worktree`` of the commit before a change)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_index_stage.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
# --code: run the stage from another checkout (the same bench before a change)
sys.path.insert(0, os.environ.get("BENCH_INDEX_CODE") or str(ROOT))

WORDS = ("revenue drivers riders growth loss insurance city platform regulation market share "
         "trips pandemic freight delivery autonomous vehicles bikes scooters network").split()


def make_run(out: Path, size: int) -> None:
    """What the chunks and split stages leave for ``size`` chunks of ~150 words (~1 kB)."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from llama_index_finetune_embed._io import atomic_write_json, stable_id
    from llama_index_finetune_embed.pipeline.stages.chunks import ChunkFile

    def nodes():
        for i in range(size):
            text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(150))
            yield TextNode(
                id_=stable_id("stage", str(i)), text=f"{text} chunk {i}.",
                metadata={"file_name": f"filing{i // 300}.pdf", "page_label": str(i % 300)},
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"d{i // 300}")},
            )  # fmt: skip

    ChunkFile.write(out / "chunks.json", nodes())
    ids = [stable_id("stage", str(i)) for i in range(size)]
    random.Random(0).shuffle(ids)
    n_val = size // 5
    split = {"train": sorted(ids[n_val:]), "val": sorted(ids[:n_val])}
    atomic_write_json(out / "split.json", split)


def child(out: Path, url: str) -> dict:
    from llama_index_finetune_embed.pipeline import stages as st
    from llama_index_finetune_embed.pipeline.choices import resolve_choices
    from llama_index_finetune_embed.pipeline.config import RunConfig
    from llama_index_finetune_embed.pipeline.serve import served_form
    from llama_index_finetune_embed.pipeline.stages import index as index_stage

    # after the package: bench_store_write puts ROOT first on sys.path
    fast_embed_model = importlib.import_module("bench_store_write").fast_embed_model

    config = RunConfig(out=str(out), to_store=url)
    job = st.Job(config, resolve_choices(config), out, {})
    st.load_chunks(job, {})
    st.load_split(job, {})
    job.served = {"row": "base + windows", **served_form("base + windows", st.BASE_ROW)}
    index_stage.served_model = lambda job, which: fast_embed_model()  # the stand-in, nothing else
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    record = index_stage.make_index(job)
    return {
        "chunks": record["chunks"], "rows": record["vectors"], "written": record["written"],
        "seconds": round(time.perf_counter() - t0, 1), "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "code": str(Path(st.__file__).parents[3]),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-hnsw", dest="hnsw", action="store_const", const="&hnsw=off",
                        default="", help="exact-search tables (no HNSW build after the rows)")
    parser.add_argument("--code", help="a checkout whose stage code the measured process runs")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return 0
    import pgserver

    work = Path(tempfile.mkdtemp(prefix="bench_index_stage_"))
    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    socket = server.get_uri().split("host=", 1)[1]
    print(f"stage code: {args.code or ROOT}")
    print("| chunks | rows written | stage, s | peak RSS before the stage, MB | "
          "peak RSS, MB |\n|--:|--:|--:|--:|--:|")
    rows = []
    for size in args.sizes:
        out = work / f"run{size}"
        out.mkdir()
        make_run(out, size)
        url = f"postgresql://postgres@/postgres?host={socket}&table=s{size}{args.hnsw}"
        env = {**os.environ, "BENCH_INDEX_CODE": args.code or ""}
        proc = subprocess.run([sys.executable, __file__, "--child", str(out), url],
                              capture_output=True, text=True, env=env)  # fmt: skip
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        assert Path(row["code"]) == Path(args.code or ROOT).resolve(), row["code"]
        rows.append(row)
        print(f"| {size:,} | {row['written']:,} | {row['seconds']} | {row['rss_before_mb']:,} | "
              f"{row['peak_rss_mb']:,} |", flush=True)  # fmt: skip
    if len(rows) > 1:
        low, high = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
        print(f"\npeak RSS, {args.sizes[-1]:,} vs {args.sizes[0]:,} chunks: "
              f"{(high - low) / low:+.1%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
