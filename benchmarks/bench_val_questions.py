"""Held-out questions from the local LLM: time, yield and where the questions point.

Runs ``offline_val_questions`` (the main job's held-out writer, ``questions_per_chunk=2``) with
``LocalLLM(batch_size=...)`` over the first ``--chunks`` chunks of ../shared/data/seed10k's Uber
val corpus, and prints one JSON line: seconds, LLM calls, prompt and completion tokens, questions
kept, chunks with one, and for chunks of several passages the share of questions from the first
passage and their mean relative position (0 = first passage, 1 = last). ``--code DIR`` runs
another checkout's package (e.g. a worktree of an older commit), for a before/after on one
machine, one run after the other.

Usage (heavy: one at a time)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_val_questions.py --chunks 400
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_val_questions.py --chunks 400 \\
        --code /tmp/wt_old --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "seed10k" / "val_dataset.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=None, help="default: LocalLLM's")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose package runs")
    parser.add_argument("--out", type=Path, default=None, help="write the questions here (JSON)")
    args = parser.parse_args()
    if not VAL.is_file():
        print(f"skipped: {VAL} not found (../shared is not beside this checkout)")
        return 0
    sys.path.insert(0, str(args.code.resolve()))
    from llama_index.core.schema import TextNode

    import llama_index_finetune_embed as package
    from llama_index_finetune_embed.generate import LocalLLM, offline_val_questions

    assert Path(package.__file__).resolve().is_relative_to(args.code.resolve()), package.__file__
    corpus = json.loads(VAL.read_text(encoding="utf-8"))["corpus"]
    nodes = [TextNode(id_=k, text=v) for k, v in list(corpus.items())[: args.chunks]]
    llm = LocalLLM(**({"batch_size": args.batch_size} if args.batch_size else {}))
    llm.question_writer()._load()  # the load is not timed
    start = time.perf_counter()
    ds = offline_val_questions(nodes, llm=llm, questions_per_chunk=2, seed=0, show_progress=False)
    seconds = time.perf_counter() - start
    stats = ds.generation_stats
    multi = [p for p in ds.query_positions.values() if p["passages"] > 1]
    print(json.dumps({
        "code": str(args.code), "chunks": len(nodes), "batch_size": llm.batch_size,
        "seconds": round(seconds, 1), "calls": stats.get("calls"),
        "prompt_tokens": stats.get("prompt_tokens"),
        "completion_tokens": stats.get("completion_tokens"), "kept": len(ds),
        "chunks_with_one": len({ds.relevant_docs[q][0] for q in ds.queries}),
        "first_passage_share": round(sum(p["passage"] == 0 for p in multi) / max(1, len(multi)), 3),
        "mean_position": round(sum(p["passage"] / (p["passages"] - 1) for p in multi)
                               / max(1, len(multi)), 3),
    }))  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"queries": ds.queries, "positions": ds.query_positions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
