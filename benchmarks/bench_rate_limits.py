"""Generation against a rate-limited API: how much of the limit it uses, how often it is refused.

The local OpenAI-compatible server (``tests/_fake_openai.py``, in its own process) enforces a
request or token rate the way the API does (429 at once beyond it, with ``Retry-After`` and
``x-ratelimit-*`` headers, or ``--no-limit-headers`` for ``Retry-After`` alone);
``generate_qa_embedding_pairs`` runs with its defaults through the real
``llama_index.llms.openai.OpenAI`` client, built as the README builds it (no ``max_retries``).
Printed per scenario: wall time against the ideal (chunks / limit + one latency), the share of
the limit used, requests sent, how many the server refused, failed chunks. The scenarios are the
ones issue #23 measured.

Usage:
    .venv/bin/python benchmarks/bench_rate_limits.py [--scenario all|10rps|100rps|tpm]
        [--no-limit-headers] [--seeds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _gen_worker import make_nodes  # noqa: E402
from bench_generate import server_process, server_stats  # noqa: E402

from llama_index_finetune_embed import generate_qa_embedding_pairs  # noqa: E402

#: name -> (server flags, latency s, chunks, requests/s the limit allows)
SCENARIOS = {
    "10rps": (["--rps", "10"], 0.5, 300, 10.0),
    "100rps": (["--rps", "100"], 1.0, 395, 100.0),
    # 30k tokens/min; a call here takes ~45 prompt + ~35 completion "tokens" (words): ~6 calls/s
    "tpm": (["--tpm", "30000"], 0.5, 300, None),
}


def run(name: str, headers: bool) -> dict:
    from llama_index.llms.openai import OpenAI

    flags, latency, chunks, rps = SCENARIOS[name]
    flags = flags + ([] if headers else ["--no-limit-headers"])
    with server_process(latency, extra=tuple(flags)) as url:
        # as the README builds it (LlamaIndex's default max_retries=3): the run copes with it
        llm = OpenAI(model="gpt-4o-mini", api_key="x", api_base=url)
        start = time.perf_counter()
        ds = generate_qa_embedding_pairs(make_nodes(chunks), llm, show_progress=False)
        wall = time.perf_counter() - start
        snap = server_stats(url)
    sent = sum(snap["requests"].values())
    tokens = snap["prompt_tokens"] + snap["completion_tokens"]
    if rps is None:  # a token limit: the calls/s it allows at the tokens a call took
        rps = 30000 / 60 / (tokens / chunks)
    return {
        "scenario": name,
        "headers": headers,
        "chunks": chunks,
        "latency_s": latency,
        "limit_rps": round(rps, 2),
        "wall_s": round(wall, 1),
        "ideal_s": round(chunks / rps + latency, 1),
        "share_of_limit": round(chunks / wall / rps, 2),
        "requests": sent,
        "refused_429": snap["rate_limited"],
        "refused_share": round(snap["rate_limited"] / sent, 3),
        "failed_chunks": len(ds.failed_chunks),
        "max_in_flight": snap["max_in_flight"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--no-limit-headers", action="store_true", help="Retry-After only")
    parser.add_argument("--seeds", type=int, default=1, help="repeats of each scenario")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    print("| scenario | headers | limit (req/s) | latency | chunks | wall (ideal) | share of limit "
          "| requests | 429 | failed | max in flight |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name in names:
        for _ in range(args.seeds):
            r = run(name, not args.no_limit_headers)
            print(f"| {name} | {'yes' if r['headers'] else 'Retry-After only'} | {r['limit_rps']} "
                  f"| {r['latency_s']} s | {r['chunks']} | {r['wall_s']} s ({r['ideal_s']} s) "
                  f"| {r['share_of_limit']:.0%} | {r['requests']} | {r['refused_429']} "
                  f"({r['refused_share']:.0%}) | {r['failed_chunks']} | {r['max_in_flight']} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
