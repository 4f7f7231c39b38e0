"""Adapter over a frozen MiniLM vs the base model on the seed data: MRR@10, hit@5, timings.

Two settings, each the mean of three seeds: (1) train on the Lyft questions
(``train_dataset.json``), evaluate on the Uber questions (``val_dataset.json``), cosine search over
the Uber corpus: the comparison the full-finetune benchmark reports; (2) in-domain: train on 75%
of the Lyft chunks' questions, evaluate on the questions of the other 25% (a by-chunk split with
seed 1; the engine's defaults were picked on the seed-0 split). Base-model vectors are cached in
``.bench/embedding_cache``, so only the first run pays for embedding. Heavy: run it under the lock.

Usage:
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_adapter.py [--max-length 512]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from llama_index_finetune_embed import EmbeddingAdapterFinetuneEngine, EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.adapter._embed_cache import EmbeddingCache
from llama_index_finetune_embed.embeddings import LOCAL_MINILM, load_embed_model

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed10k"
BENCH = Path(".bench")


def metrics(queries: np.ndarray, docs: np.ndarray, relevant: list[set[int]]) -> dict[str, float]:
    """MRR@10 and hit@5 of cosine search (a few numpy lines, independent of the library)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    top = np.argsort(-(q @ d.T), axis=1)[:, :10]
    first = [
        next((r for r, j in enumerate(row) if j in rel), 99)
        for row, rel in zip(top, relevant, strict=True)
    ]
    return {
        "mrr@10": float(np.mean([1 / (r + 1) if r < 10 else 0.0 for r in first])),
        "hit@5": float(np.mean([r < 5 for r in first])),
    }


def embed_split(cache: EmbeddingCache, ds: EmbeddingQAFinetuneDataset) -> tuple:
    qids, dids = list(ds.queries), list(ds.corpus)
    q = cache.embed([ds.queries[i] for i in qids], side="query", show_progress=True)
    d = cache.embed([ds.corpus[i] for i in dids], side="text", show_progress=True)
    row = {doc: i for i, doc in enumerate(dids)}
    return q, d, [{row[doc] for doc in ds.relevant_docs[i]} for i in qids]


def compare(base, train, val, cache: EmbeddingCache, args, tag: str) -> dict[str, dict]:
    """Base vs linear and two-layer adapters trained on ``train``, scored on ``val``."""
    val_q, val_d, val_rel = embed_split(cache, val)
    rows = {"base (all-MiniLM-L6-v2)": {**metrics(val_q, val_d, val_rel), "train_s": 0.0}}
    for kind in ("linear", "two_layer"):
        runs = []
        for seed in args.seeds:
            engine = EmbeddingAdapterFinetuneEngine(
                train,
                base,
                adapter=kind,
                model_output_path=BENCH / f"adapter-{tag}-{kind}-{seed}-{args.max_length}",
                cache_dir=BENCH / "embedding_cache",
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                weight_decay=args.weight_decay,
                seed=seed,
            )
            start = time.perf_counter()
            engine.finetune()  # vectors come from the cache: this is training time
            train_s = time.perf_counter() - start
            adapted = engine.get_finetuned_model().adapt_query_embeddings(val_q)
            runs.append({**metrics(adapted, val_d, val_rel), "train_s": train_s})
        row = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        rows[f"adapter {kind}"] = {**row, "mrr@10 sd": float(np.std([r["mrr@10"] for r in runs]))}
    return rows


def print_table(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}\n| model | MRR@10 | hit@5 | adapter training (s) |\n|---|---|---|---|")
    for name, row in rows.items():
        sd = f" ± {row['mrr@10 sd']:.4f}" if "mrr@10 sd" in row else ""
        print(f"| {name} | {row['mrr@10']:.4f}{sd} | {row['hit@5']:.4f} | {row['train_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SEED_DIR)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-length", type=int, default=512, help="MiniLM's own default: 256")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    train = EmbeddingQAFinetuneDataset.from_json(args.data / "train_dataset.json")
    val = EmbeddingQAFinetuneDataset.from_json(args.data / "val_dataset.json")
    base = load_embed_model(LOCAL_MINILM, max_length=args.max_length)
    cache = EmbeddingCache(BENCH / "embedding_cache", base)
    start = time.perf_counter()
    embed_split(cache, train)
    embed_split(cache, val)
    embed_s = time.perf_counter() - start
    print(f"embedding: {cache.computed} new texts in {embed_s:.1f} s (cache: {cache.path})")

    results = {"uber": compare(base, train, val, cache, args, "uber")}
    print_table(
        f"Train: {len(train)} Lyft questions. Eval: {len(val)} Uber questions over "
        f"{len(val.corpus)} chunks. {args.epochs} epochs, mean of seeds {args.seeds}, "
        f"max_length {args.max_length}.",
        results["uber"],
    )
    # in-domain: questions about chunks the adapter never saw, from the same 10-K
    lyft_train, lyft_test = train.split(0.25, seed=1)
    results["lyft"] = compare(base, lyft_train, lyft_test, cache, args, "lyft")
    print_table(
        f"Train: {len(lyft_train)} Lyft questions. Eval: {len(lyft_test)} questions about the "
        f"other {len(lyft_test.corpus)} Lyft chunks (split by chunk, seed 1).",
        results["lyft"],
    )
    BENCH.mkdir(exist_ok=True)
    (BENCH / f"adapter_results_{args.max_length}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "embed_s": embed_s, **results},
        indent=2,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
