"""Evaluation harness timings (10k x 10k, precomputed embeddings) and a real comparison table.

``synthetic``: random unit float32 embeddings (dim 384), one relevant chunk per query; times
``evaluate_embeddings`` (cosine top-k in blocks, the six LlamaIndex metric classes per query,
the IR metrics and a 2,000-resample bootstrap of every metric) at several sizes, with peak RSS.

``real``: base all-MiniLM-L6-v2 on the seed val set (790 Uber questions, 395 chunks): the fast
path vs the RetrieverEvaluator path (id-for-id check), sentence-transformers'
InformationRetrievalEvaluator numbers, and a comparison table (max_seq_length 256 vs 512)
written as report.md / report.png / report.json.

Heavy: run under the lock.

Usage:
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_evaluate.py synthetic
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_evaluate.py real --out runs/bench/eval
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.embeddings import LOCAL_MINILM, load_embed_model
from llama_index_finetune_embed.evaluate import (
    ComparisonTable,
    DatasetEmbeddings,
    compare_embed_models,
    embed_dataset,
    evaluate_embeddings,
    evaluate_retrieval,
    ir_metrics,
)

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed10k"


def synthetic(n_queries: int, n_corpus: int, dim: int = 384, seed: int = 0):
    """A dataset of ids only and unit embeddings where query i is near chunk i % n_corpus."""
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n_corpus, dim), dtype=np.float32)
    target = np.arange(n_queries) % n_corpus
    queries = corpus[target] + 4.0 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ds = EmbeddingQAFinetuneDataset.model_construct(
        queries={f"q{i}": f"q{i}" for i in range(n_queries)},
        corpus={f"c{i}": f"c{i}" for i in range(n_corpus)},
        relevant_docs={f"q{i}": [f"c{t}"] for i, t in enumerate(target)},
    )
    return ds, DatasetEmbeddings(queries, corpus)


def run_synthetic(sizes: list[tuple[int, int]]) -> None:
    print("| queries | chunks | seconds | peak RSS MiB | hit@5 | MRR@10 |")
    print("|--:|--:|--:|--:|--:|--:|")
    for n_q, n_c in sizes:
        ds, emb = synthetic(n_q, n_c)
        start = time.perf_counter()
        result = evaluate_embeddings(ds, emb, top_k=5, name="synthetic")
        took = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        m = result.metrics
        cells = (f"{n_q:,}", f"{n_c:,}", f"{took:.1f}", f"{rss:.0f}")
        cells += (f"{m['hit_rate']:.3f}", f"{m['mrr@10']:.3f}")
        print("| " + " | ".join(cells) + " |")


def run_real(out: Path, max_seq_length: int) -> None:
    val = EmbeddingQAFinetuneDataset.from_json(SEED_DIR / "val_dataset.json")
    out.mkdir(parents=True, exist_ok=True)
    model = load_embed_model(LOCAL_MINILM, max_length=max_seq_length)

    start = time.perf_counter()
    emb = embed_dataset(val, model)
    t_embed = time.perf_counter() - start
    start = time.perf_counter()
    fast = evaluate_embeddings(val, emb, top_k=5, name=f"MiniLM@{max_seq_length}")
    t_metrics = time.perf_counter() - start
    start = time.perf_counter()
    slow = evaluate_retrieval(val, model, top_k=5, method="retriever")
    t_slow = time.perf_counter() - start
    same_ids = sum(
        a.retrieved_ids == b.retrieved_ids
        for a, b in zip(fast.per_query, slow.per_query, strict=True)
    )
    same_vals = all(
        b.metrics == {k: a.metrics[k] for k in b.metrics}
        for a, b in zip(fast.per_query, slow.per_query, strict=True)
    )
    print(f"fast path: embed {t_embed:.1f} s + metrics {t_metrics:.2f} s")
    print(f"retriever path (VectorStoreIndex + RetrieverEvaluator): {t_slow:.1f} s")
    print(f"identical top-5 ids: {same_ids}/{len(fast.per_query)} queries")
    print(f"identical metric values: {same_vals}")

    start = time.perf_counter()
    ir = ir_metrics(val, LOCAL_MINILM, max_seq_length=max_seq_length)
    print(f"sentence-transformers IR metrics ({time.perf_counter() - start:.1f} s):")
    print("  " + ", ".join(f"{k}={v:.4f}" for k, v in ir.items()))
    print("  fast path: " + ", ".join(f"{k}={fast.metrics[k]:.4f}" for k in ir))

    other = 256 if max_seq_length != 256 else 512
    start = time.perf_counter()
    table = compare_embed_models(
        val, {f"MiniLM max_seq {other}": LOCAL_MINILM}, top_k=5, max_seq_length=other
    )
    print(f"compare_embed_models, one model: {time.perf_counter() - start:.1f} s")
    fast.name = f"MiniLM max_seq {max_seq_length}"
    table = ComparisonTable.from_results([table.results[0], fast])
    md = table.to_markdown()
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(table.to_dict(), indent=1), encoding="utf-8")
    table.plot(out / "report.png")
    print(md)
    print(f"wrote {out}/report.md, report.png, report.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    syn = sub.add_parser("synthetic")
    syn.add_argument(
        "--sizes", nargs="+", default=["2500x10000", "5000x10000", "10000x10000", "10000x5000"]
    )
    real = sub.add_parser("real")
    real.add_argument("--out", type=Path, default=Path("runs/bench/eval"))
    real.add_argument("--max-seq-length", type=int, default=512)
    args = parser.parse_args()
    if args.what == "synthetic":
        run_synthetic([tuple(int(x) for x in s.split("x")) for s in args.sizes])
    else:
        run_real(args.out, args.max_seq_length)


if __name__ == "__main__":
    main()
