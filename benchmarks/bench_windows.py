"""Long chunks: how should a chunk longer than the model's window be read? (no training)

Scores an embed model on the human-query sets (``../shared/data/human``: SciFact and SQuAD
paragraphs, short; SQuAD chunks of <= 1,024 tokens, long) and the tutorial's Uber val (GPT-3.5
questions, 395 chunks of a 10-K), NDCG@10 x100 with the paired 95% interval of the difference to
the status quo (``HuggingFaceEmbedding(model_name=...)``: long chunks truncated):

- ``windows W/O``: ``build_window_index`` with windows of at most W tokens overlapping by O
  (``max`` = all the model reads), each chunk scored by its best window (as the index ranks);
- ``... +A mean``: chunk score = best window + A x mean of its windows (a mix, for comparison);
- ``... first +B``: the chunk's first window's score gets +B (a mix, for comparison);
- ``mean of windows``: one vector per chunk, the token-weighted mean of its windows
  (``load_embed_model(long_texts="window")``);
- ``truncated at 512``.

With ``--timing`` it also builds a plain ``VectorStoreIndex`` and a ``build_window_index`` over
Uber val's 395 chunks and prints build seconds, vectors per chunk and retrieval latency.
Usage (about 10 minutes on 2 cores with --quick)::

    .venv/bin/python benchmarks/bench_windows.py --quick --timing
    .venv/bin/python benchmarks/bench_windows.py --model /path/to/all-mpnet-base-v2 --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_human import HUMAN, SHARED, HumanSet, fast, status_quo_base  # noqa: E402

SETS = ("scifact", "squad", "squad_long", "uber")


def load_set(name: str, quick: bool) -> Any:
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    if name == "uber":
        return EmbeddingQAFinetuneDataset.from_json(SHARED / "seed10k" / "val_dataset.json")
    return HumanSet(name, quick, split_seed=0).eval


def chunk_scores(emb: Any, mean_weight: float, first_bonus: float) -> np.ndarray:
    """(queries x chunks) scores: best window + ``mean_weight`` x mean window (+ first bonus)."""
    q = emb.queries / np.linalg.norm(emb.queries, axis=1, keepdims=True)
    c = emb.corpus / np.linalg.norm(emb.corpus, axis=1, keepdims=True)
    sims = q @ c.T
    best = np.maximum.reduceat(sims, emb.starts, axis=1)
    counts = np.diff(np.append(emb.starts, sims.shape[1]))
    mean = np.add.reduceat(sims, emb.starts, axis=1) / counts
    first = sims[:, emb.starts]
    return best + mean_weight * mean + first_bonus * (first >= best)


def scored_as(ds: Any, scores: np.ndarray, name: str) -> Any:
    """A result ranking chunks by ``scores`` (via the evaluator: query rows = scores, corpus =
    identity, so cosine order is score order)."""
    from llama_index_finetune_embed.evaluate import DatasetEmbeddings, evaluate_embeddings

    eye = np.eye(scores.shape[1])
    return evaluate_embeddings(ds, DatasetEmbeddings(scores, eye), top_k=10, name=name)


def rows_for(ds: Any, model_path: str, args: argparse.Namespace) -> list[Any]:
    from llama_index_finetune_embed import evaluate_retrieval
    from llama_index_finetune_embed.embeddings import load_embed_model
    from llama_index_finetune_embed.evaluate import RetrievalEvaluator
    from llama_index_finetune_embed.serving.windows import window_splitter

    results = [evaluate_retrieval(ds, fast(status_quo_base(model_path), args.bf16), top_k=10,
                                  name="status quo (truncated)")]  # fmt: skip
    model = fast(load_embed_model(model_path), args.bf16)
    room = window_splitter(model).tokens
    for size, overlap, full_tail in args.windows:
        size = size or room
        emb = _window_embeddings(ds, model, size, overlap, full_tail)
        label = f"windows {'max' if size == room else size}/{overlap}{' full tail' * full_tail}"
        evaluator = RetrievalEvaluator(ds, top_k=10)
        results.append(evaluator.score_embeddings(emb, name=label))
        for w in args.mean_weights:
            results.append(scored_as(ds, chunk_scores(emb, w, 0.0), f"{label} +{w} mean"))
        for b in args.first_bonus:
            results.append(scored_as(ds, chunk_scores(emb, 0.0, b), f"{label} first +{b}"))
    for name, kwargs in (("mean of windows", {"long_texts": "window"}),
                         ("truncated at 512", {"max_length": 512})):  # fmt: skip
        variant = fast(load_embed_model(model_path, **kwargs), args.bf16)
        results.append(evaluate_retrieval(ds, variant, top_k=10, name=name))
    return results


def _window_embeddings(ds: Any, model: Any, size: int, overlap: int, full_tail: bool) -> Any:
    """The fast path's window embeddings with windows of ``size`` tokens, ``overlap`` shared."""
    from llama_index_finetune_embed.evaluate import fast as fast_path
    from llama_index_finetune_embed.serving.windows import window_splitter

    splitter = window_splitter(model, window_tokens=size, overlap=overlap, full_tail=full_tail)
    return fast_path.embed(ds, model, num_workers=1, progress=False, windows=splitter)


def timing(model_path: str, bf16: bool) -> None:
    """Build seconds, vectors per chunk, NDCG@10 on Uber val's questions and retrieval latency:
    the status quo (plain ``VectorStoreIndex`` + ``HuggingFaceEmbedding``, LlamaIndex's fp32 at
    batch 10), ``build_window_index`` with those embedding settings, and ``build_window_index``
    with the package's (``load_embed_model``: bf16 where native, batch 64; longest first)."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import (
        EmbeddingQAFinetuneDataset,
        build_window_index,
        evaluate_retrieval,
    )
    from llama_index_finetune_embed.embeddings import load_embed_model

    val = EmbeddingQAFinetuneDataset.from_json(SHARED / "seed10k" / "val_dataset.json")
    nodes = [TextNode(id_=cid, text=text) for cid, text in val.corpus.items()]
    queries = list(val.queries.values())[:200]
    before = fast(load_embed_model(model_path, precision="fp32", embed_batch_size=10), bf16)
    now = load_embed_model(model_path)
    builds = (
        ("status quo (plain, fp32 b10)", lambda: VectorStoreIndex(
            nodes, embed_model=status_quo_base(model_path))),
        ("windows, fp32 b10", lambda: build_window_index(nodes, before)),
        (f"windows, package ({next(now._model.parameters()).dtype} b{now.embed_batch_size})",
         lambda: build_window_index(nodes, now)),
    )  # fmt: skip
    base_seconds = None
    for label, build in builds:
        start = time.perf_counter()
        index = build()
        built = time.perf_counter() - start
        base_seconds = base_seconds or built
        vectors = len(index.index_struct.nodes_dict)
        retriever = index.as_retriever(similarity_top_k=10)
        ndcg = evaluate_retrieval(val, retriever=retriever, top_k=10).metrics["ndcg"]
        retriever.retrieve(queries[0])
        lat = []
        for q in queries:
            t = time.perf_counter()
            retriever.retrieve(q)
            lat.append(time.perf_counter() - t)
        print(f"{label:34s} build {built:6.1f} s ({built / base_seconds:.2f}x)  "
              f"{vectors / built:5.1f} vectors/s  vectors/chunk {vectors / len(nodes):.2f}  "
              f"NDCG@10 {100 * ndcg:.1f}  retrieve median {1000 * statistics.median(lat):.1f} ms",
              flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="300 queries per human set")
    p.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    p.add_argument("--model", default=None, help="model path (default: packaged MiniLM)")
    p.add_argument("--windows", nargs="+", default=["0/0", "128/0", "0/64", "0/127"],
                   help="SIZE/OVERLAP[f] in tokens; SIZE 0 = all the model reads; f: the "
                   "last window moved back to be full")
    p.add_argument("--mean-weights", nargs="*", type=float, default=[0.25])
    p.add_argument("--first-bonus", nargs="*", type=float, default=[0.02])
    p.add_argument("--bf16", action="store_true",
                   help="embed in bf16 (faster only on CPUs with native bf16)")
    p.add_argument("--timing", action="store_true", help="index build time and query latency")
    args = p.parse_args(argv)
    args.windows = [(int(w.split("/")[0]), int(w.split("/")[1].rstrip("f")), w.endswith("f"))
                    for w in args.windows]  # fmt: skip
    if not (HUMAN / "README.md").is_file():
        sys.exit(f"needs ../shared/data (human sets and seed10k) beside the checkout: {HUMAN}")
    from llama_index_finetune_embed import ComparisonTable
    from llama_index_finetune_embed.embeddings import packaged_minilm_path

    model_path = args.model or str(packaged_minilm_path())
    started = time.perf_counter()
    for name in args.sets:
        ds = load_set(name, args.quick)
        table = ComparisonTable.from_results(rows_for(ds, model_path, args))
        print(f"\n## {name}: {len(ds.queries)} queries, {len(ds.corpus)} chunks")
        for r in table.results:
            line = f"{r.name:34s} ndcg@10 {100 * r.metrics['ndcg@10']:5.1f}"
            if r is not table.results[0]:
                d = table.paired_diff(r.name, "ndcg@10")
                line += f"  ({100 * d.delta:+.1f} [{100 * d.ci[0]:+.1f}, {100 * d.ci[1]:+.1f}])"
            print(line + f"  mrr@10 {100 * r.metrics['mrr@10']:5.1f}", flush=True)
    if args.timing:
        print()
        timing(model_path, args.bf16)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
