"""Generation at corpus scale: chunks/s, peak RSS and cache size as the corpus grows.

Each size runs in a fresh process (its own peak RSS) against the local OpenAI-compatible server
(``tests/_fake_openai.py``, another process) through the real ``llama_index.llms.openai.OpenAI``
client, with ``cache_path`` and the defaults otherwise. Chunks are small synthetic ones
(``tests/_gen_worker.make_nodes``). Memory that grows less than linearly with the corpus means
no per-call state is kept beyond the chunks and their questions.

Usage:
    .venv/bin/python benchmarks/bench_generate_scale.py [--sizes 10000 30000 100000]
        [--latency 0.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_size(n: int, url: str, cache: Path) -> dict:
    """In this process: generate for ``n`` chunks; return the numbers."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _gen_worker import make_nodes
    from llama_index.llms.openai import OpenAI

    from llama_index_finetune_embed import generate_qa_embedding_pairs

    nodes = make_nodes(n)
    llm = OpenAI(model="gpt-4o-mini", api_key="x", api_base=url, max_retries=0, timeout=60)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    ds = generate_qa_embedding_pairs(nodes, llm, cache_path=cache, show_progress=False)
    wall = time.perf_counter() - start
    return {
        "chunks": n,
        "wall_s": round(wall, 1),
        "chunks_per_s": round(n / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": round(rss_before),
        "cache_mb": round(cache.stat().st_size / 2**20, 1),
        "failed": len(ds.failed_chunks),
        "questions": len(ds.queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--one", nargs=3, metavar=("N", "URL", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(int(args.one[0]), args.one[1], Path(args.one[2]))))
        return
    cmd = [sys.executable, str(ROOT / "tests" / "_fake_openai.py"), "--delay", str(args.latency),
           "--max-requests", str(10 * max(args.sizes))]  # fmt: skip
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    print(f"latency {args.latency} s")
    print("| chunks | wall | chunks/s | peak RSS | RSS after imports | cache | failed |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.sizes:
                cache = Path(tmp) / f"cache-{n}.jsonl"
                out = subprocess.run(
                    [sys.executable, __file__, "--one", str(n), url, str(cache)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {r['chunks']:,} | {r['wall_s']} s | {r['chunks_per_s']} | "
                      f"{r['peak_rss_mb']} MB | {r['rss_before_mb']} MB | {r['cache_mb']} MB | "
                      f"{r['failed']} |", flush=True)  # fmt: skip
    finally:
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
