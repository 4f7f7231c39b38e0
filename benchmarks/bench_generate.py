"""Question generation wall time: ours (async, num_workers) vs a one-call-at-a-time loop.

Both talk to the same local OpenAI-compatible server (``tests/_fake_openai.py``) through the real
``llama_index.llms.openai.OpenAI`` client; the server answers after ``--latency`` seconds. The
sequential loop is llama-index-finetuning 0.4.2's behaviour: ``llm.complete`` per chunk, in order.
Chunks are the first ``--chunks`` Lyft 10-K chunks of ../shared/data/seed10k (synthetic chunks
when that is absent). With ``--fault-rate`` the server also injects 429/5xx/timeouts/garbage and
the run reports what the retries cost.

Usage:
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_generate.py [--chunks 60]
        [--latency 0.2] [--workers 16] [--fault-rate 0.3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _gen_worker import make_llm, make_nodes  # noqa: E402

from llama_index_finetune_embed import (  # noqa: E402
    DEFAULT_QA_GENERATE_PROMPT_TMPL,
    EmbeddingQAFinetuneDataset,
    generate_qa_embedding_pairs,
)

SEED = ROOT.parent / "shared" / "data" / "seed10k" / "train_dataset.json"


def load_nodes(n: int):
    from llama_index.core.schema import TextNode

    if not SEED.is_file():
        return make_nodes(n)
    corpus = EmbeddingQAFinetuneDataset.from_json(SEED).corpus
    return [TextNode(id_=cid, text=text) for cid, text in list(corpus.items())[:n]]


@contextlib.contextmanager
def server_process(
    latency: float,
    fault_rate: float = 0.0,
    faults: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
):
    """The fake server in its own process (a real API does not share our GIL); yields its URL.
    ``extra``: more of its flags (e.g. ``("--rps", "10")``)."""
    cmd = [sys.executable, str(ROOT / "tests" / "_fake_openai.py"), "--delay", str(latency),
           "--fault-rate", str(fault_rate), *extra]  # fmt: skip
    if faults:
        cmd += ["--faults", *faults]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as resp:
        return json.load(resp)


def sequential(nodes, llm, num_questions: int) -> tuple[float, list[str]]:
    """The reference's loop: one blocking call per chunk, naive line parsing."""
    start, kept = time.perf_counter(), []
    for node in nodes:
        prompt = DEFAULT_QA_GENERATE_PROMPT_TMPL.format(
            context_str=node.get_content(), num_questions_per_chunk=num_questions
        )
        lines = str(llm.complete(prompt)).strip().split("\n")
        questions = [re.sub(r"^\d+[\).\s]", "", q).strip() for q in lines]
        kept += [q for q in questions if q][:num_questions]
    return time.perf_counter() - start, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()

    nodes = load_nodes(args.chunks)
    print(f"{len(nodes)} chunks, server latency {args.latency * 1000:.0f} ms, "
          f"fault rate {args.fault_rate:.0%}")  # fmt: skip
    seq_s = None
    if not args.skip_sequential:
        # The naive loop has no retries, so it only gets the faults it survives: garbage answers.
        with server_process(args.latency, args.fault_rate, ("garbage",)) as url:
            seq_s, seq_q = sequential(nodes, make_llm(url, timeout=30), 2)
            valid = set(server_stats(url)["valid_questions"])
        bad = [q for q in seq_q if q not in valid]
        print(f"sequential loop (reference behaviour): {seq_s:6.2f} s  ({len(seq_q)} questions, "
              f"{len(bad)} not written as questions by the server, e.g. {sorted(set(bad))[:3]})")
    with server_process(args.latency, args.fault_rate) as url:
        start = time.perf_counter()
        ds = generate_qa_embedding_pairs(
            nodes, make_llm(url, timeout=1.0), num_workers=args.workers, max_attempts=8,
            backoff_base=0.2, backoff_max=2.0, seed=0, show_progress=False,
        )  # fmt: skip
        ours_s = time.perf_counter() - start
        snap = server_stats(url)
    bad_ours = [q for q in ds.queries.values() if q not in set(snap["valid_questions"])]
    stats = ds.generation_stats
    label = f"ours, num_workers={args.workers}:"
    print(f"{label:<39}{ours_s:6.2f} s  ({len(ds)} questions, "
          f"{len(ds.failed_chunks)} failed chunks, {len(bad_ours)} not written by the server)")
    print(f"  calls {stats['calls']} (retries {stats['retries']}, unusable outputs "
          f"{stats['unusable_outputs']}), tokens {stats['prompt_tokens']} prompt + "
          f"{stats['completion_tokens']} completion; server faults {dict(snap['faults'])}, "
          f"max in flight {snap['max_in_flight']}")  # fmt: skip
    if seq_s is not None:
        print(f"speed-up: {seq_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
