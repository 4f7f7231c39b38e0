"""The tutorial's benchmark on its own data: one table, our engines beside the published numbers.

Train on the Lyft questions (``train_dataset.json``), evaluate on the Uber questions
(``val_dataset.json``) with one evaluator for every row: ``ir_metrics`` (sentence-transformers'
InformationRetrievalEvaluator numbers: MRR@10, Accuracy@5 = hit@5, NDCG@10) at max_seq_length
512. Rows:

- base: the packaged all-MiniLM-L6-v2;
- ours (full finetune): ``SentenceTransformersFinetuneEngine`` with its default recipe
  (``benchmarks/bench_finetune.py``'s ``run_ours``; ``--ours`` passes engine keywords);
- ours (adapter): ``EmbeddingAdapterFinetuneEngine`` (defaults, linear) over the frozen base
  model; its base-model vectors are cached in ``.bench/embedding_cache`` (shared with
  ``bench_adapter.py``), so its training seconds exclude embedding;
- llama-index-finetuning 0.4.2's engine, run in ``.bench/ref-venv`` (see ``bench_finetune.py``;
  skipped with ``--skip-reference`` or when that environment is missing);
- the tutorial's published bge-small-en base/finetuned rows (``published_bge_small_en_*.csv``).
  Those are another base model (bge-small-en): compare gains, not absolute values.

Usage (heavy, several minutes of CPU: serialise with the other jobs)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/reproduce_seed.py \
        --data ../shared/data/seed10k
    # quicker: no reference engine; or a subset of the chunks for a dry run
    flock /tmp/heavy.lock .venv/bin/python benchmarks/reproduce_seed.py --skip-reference
    .venv/bin/python benchmarks/reproduce_seed.py --limit 20 --skip-reference  # not comparable

Measured (2-core CPU, ``--skip-reference``, engine defaults; 668 Lyft / 790 Uber questions)::

    | model | MRR@10 | hit@5 | NDCG@10 | train s |
    | --- | --- | --- | --- | --- |
    | base all-MiniLM-L6-v2 | 0.5972 | 0.7620 | 0.6568 | - |
    | ours: full finetune | 0.6708 | 0.8215 | 0.7253 | 41.5 |
    | ours: adapter (linear) | 0.6284 | 0.7886 | 0.6850 | 1.3 |
    | published bge-small-en base | 0.6089 | 0.7291 | 0.6583 | - |
    | published bge-small-en finetuned | 0.7084 | 0.8481 | 0.7540 | - |
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_finetune  # noqa: E402  (benchmarks/ is not a package)

MAX_SEQ_LENGTH = 512
COLUMNS = {"MRR@10": "mrr@10", "hit@5": "accuracy@5", "NDCG@10": "ndcg@10"}
PUBLISHED = {
    "MRR@10": "cos_sim-MRR@10",
    "hit@5": "cos_sim-Accuracy@5",
    "NDCG@10": "cos_sim-NDCG@10",
}


def limited_data(data: Path, limit: int, out: Path) -> Path:
    """A copy of the data restricted to the first ``limit`` chunks of each split (dry runs)."""
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    out.mkdir(parents=True, exist_ok=True)
    for name in ("train_dataset.json", "val_dataset.json"):
        ds = EmbeddingQAFinetuneDataset.from_json(data / name)
        ds.subset(list(ds.corpus)[:limit]).save_json(out / name)
    return out


def evaluate_dir(data: Path, model_dir: str) -> dict[str, float]:
    """IR-evaluator numbers of a saved sentence-transformers model on the val questions."""
    from llama_index_finetune_embed import ir_metrics

    scores = ir_metrics(data / "val_dataset.json", model_dir, max_seq_length=MAX_SEQ_LENGTH)
    return {col: scores[key] for col, key in COLUMNS.items()}


def run_adapter(data: Path, out: Path, cache_dir: Path) -> tuple[dict[str, float], float]:
    """Train the default linear adapter over MiniLM; its val metrics and training seconds."""
    from llama_index_finetune_embed import (
        EmbeddingAdapterFinetuneEngine,
        EmbeddingQAFinetuneDataset,
    )
    from llama_index_finetune_embed.adapter._embed_cache import EmbeddingCache
    from llama_index_finetune_embed.embeddings import LOCAL_MINILM, load_embed_model
    from llama_index_finetune_embed.evaluate import DatasetEmbeddings, evaluate_embeddings
    from llama_index_finetune_embed.evaluate.metrics import IR_DEPTH

    train = EmbeddingQAFinetuneDataset.from_json(data / "train_dataset.json")
    val = EmbeddingQAFinetuneDataset.from_json(data / "val_dataset.json")
    base = load_embed_model(LOCAL_MINILM, max_length=MAX_SEQ_LENGTH)
    engine = EmbeddingAdapterFinetuneEngine(train, base, model_output_path=out, cache_dir=cache_dir)
    cache = EmbeddingCache(cache_dir, base)
    cache.embed(list(train.queries.values()), side="query")  # warm: time training only
    cache.embed(list(train.corpus.values()), side="text")
    start = time.perf_counter()
    engine.finetune()
    seconds = time.perf_counter() - start
    queries = cache.embed(list(val.queries.values()), side="query")
    docs = cache.embed(list(val.corpus.values()), side="text")
    adapted = engine.get_finetuned_model().adapt_query_embeddings(queries)
    result = evaluate_embeddings(
        val, DatasetEmbeddings(adapted, docs), top_k=IR_DEPTH, n_resamples=1
    )
    return {col: result.metrics[key] for col, key in COLUMNS.items()}, seconds


def read_published(data: Path, which: str) -> dict[str, float] | None:
    path = data / f"published_bge_small_en_{which}.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    return {col: float(row[name]) for col, name in PUBLISHED.items()}


def print_table(rows: list[tuple[str, dict[str, float], float | None]]) -> None:
    print("| model | " + " | ".join(COLUMNS) + " | train s |")
    print("| --- " * (len(COLUMNS) + 2) + "|")
    for name, metrics, seconds in rows:
        values = " | ".join(f"{metrics[col]:.4f}" for col in COLUMNS)
        print(f"| {name} | {values} | {'-' if seconds is None else f'{seconds:.1f}'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench_finetune.DATA)
    parser.add_argument("--out", type=Path, default=None, help="where models go (default: temp)")
    parser.add_argument("--ours", default="{}", help="JSON keyword arguments for our engine")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-adapter", action="store_true")
    parser.add_argument("--ref-python", type=Path, default=bench_finetune.REF_PYTHON)
    parser.add_argument(
        "--cache-dir", type=Path, default=HERE.parent / ".bench" / "embedding_cache"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N chunks per split")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="reproduce-seed-"))
    published_dir = args.data
    data = limited_data(args.data, args.limit, out / "data") if args.limit else args.data

    rows: list[tuple[str, dict[str, float], float | None]] = []
    rows.append(("base all-MiniLM-L6-v2", evaluate_dir(data, bench_finetune._minilm()), None))
    seconds = bench_finetune.run_ours(data, out / "ours", json.loads(args.ours))
    rows.append(("ours: full finetune", evaluate_dir(data, str(out / "ours")), seconds))
    if not args.skip_adapter:
        metrics, seconds = run_adapter(data, out / "adapter", args.cache_dir)
        rows.append(("ours: adapter (linear)", metrics, seconds))
    if args.skip_reference or not args.ref_python.is_file():
        print(f"(llama-index-finetuning row skipped: {args.ref_python} not used)")
    else:
        seconds = bench_finetune.run_ref(data, out / "ref", args.ref_python)
        rows.append(("llama-index-finetuning 0.4.2", evaluate_dir(data, str(out / "ref")), seconds))
    for which in ("base", "finetuned"):
        published = read_published(published_dir, which)
        if published is not None:
            rows.append((f"published bge-small-en {which}", published, None))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
