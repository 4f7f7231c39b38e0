"""LlamaIndex's "Finetune Embeddings" tutorial, end to end, with this package.

1. Questions are written for the chunks of the Lyft 10-K (train) and the Uber 10-K (val), or the
   tutorial's own question files are read with ``--train/--val``.
2. The base model is finetuned on the train questions.
3. The tutorial's two tables are printed for the val questions:
   - hit-rate@5 (and MRR@5) of a ``VectorStoreIndex`` retriever, as the tutorial's ``evaluate()``
     computes it, for the base model, the finetuned one and, when ``OPENAI_API_KEY`` is set and
     llama-index-embeddings-openai is installed, ``text-embedding-3-small``;
   - sentence-transformers' InformationRetrievalEvaluator (Accuracy@5, MRR@10, NDCG@10) for the
     base and finetuned models, beside the tutorial's published bge-small-en rows
     (``../shared/data/seed10k/published_bge_small_en_{base,finetuned}.csv``, or ``--published``).

Usage:
    # the tutorial's data, written by GPT-3.5 (no API calls; about 2 min of CPU for finetuning):
    python examples/reproduce_tutorial.py --train train_dataset.json --val val_dataset.json

    # questions written over the PDFs by OpenAI (OPENAI_API_KEY set), or offline by SmolLM2:
    python examples/reproduce_tutorial.py --llm openai:gpt-4o-mini
    python examples/reproduce_tutorial.py --llm local --max-chunks 100

The default base model is the packaged all-MiniLM-L6-v2 (nothing is downloaded); the published
rows are bge-small-en's, so compare the *gain* over each base model, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IR_COLUMNS = {"Accuracy@5": "accuracy@5", "MRR@10": "mrr@10", "NDCG@10": "ndcg@10"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data (JSON datasets, or documents + an LLM)")
    data.add_argument("--train", type=Path, help="train dataset JSON (skips generation)")
    data.add_argument("--val", type=Path, help="val dataset JSON (skips generation)")
    data.add_argument("--train-docs", nargs="+", default=[SHARED / "10k" / "lyft_2021.pdf"])
    data.add_argument("--val-docs", nargs="+", default=[SHARED / "10k" / "uber_2021.pdf"])
    data.add_argument(
        "--llm",
        default=None,
        help="openai:<model> (default when OPENAI_API_KEY is set), local (SmolLM2, offline) "
        "or none (pseudo-queries only)",
    )
    data.add_argument("--max-chunks", type=int, default=None, help="chunks per document set")
    data.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--base-model", default="local:all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=512, help="evaluation length")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--compare-openai",
        choices=["auto", "yes", "no"],
        default="auto",
        help="add text-embedding-3-small to the hit-rate table (auto: when a key is set)",
    )
    parser.add_argument("--published", type=Path, default=SHARED / "seed10k")
    parser.add_argument("--out", type=Path, default=Path("tutorial_out"))
    args = parser.parse_args(argv)
    if (args.train is None) != (args.val is None):
        parser.error("pass both --train and --val, or neither")
    if args.llm is None:
        args.llm = "openai:gpt-3.5-turbo" if os.environ.get("OPENAI_API_KEY") else "local"
    if args.llm not in ("local", "none") and not args.llm.startswith("openai:"):
        parser.error(f"--llm must be openai:<model>, local or none, got {args.llm!r}")
    return args


def load_nodes(paths: list[Any], args: argparse.Namespace) -> list[Any]:
    """Chunks of the documents, ``--max-chunks`` of them at most (a deterministic sample)."""
    from llama_index_finetune_embed import chunk_documents, load_documents
    from llama_index_finetune_embed.documents import sample_chunks

    nodes = chunk_documents(
        load_documents(paths),
        chunk_size=args.chunk_size,
        chunk_overlap=min(64, args.chunk_size // 4),
    )
    return sample_chunks(nodes, args.max_chunks)


def make_datasets(args: argparse.Namespace) -> tuple[Any, Any]:
    """(train, val): read from JSON, or written by the LLM over the two document sets."""
    from llama_index_finetune_embed import (
        EmbeddingQAFinetuneDataset,
        generate_offline_pairs,
        generate_qa_embedding_pairs,
        offline_val_questions,
    )
    from llama_index_finetune_embed.pipeline import make_llm

    if args.train is not None:
        return (
            EmbeddingQAFinetuneDataset.from_json(args.train),
            EmbeddingQAFinetuneDataset.from_json(args.val),
        )
    train_nodes, val_nodes = load_nodes(args.train_docs, args), load_nodes(args.val_docs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.llm.startswith("openai:"):  # the tutorial's recipe: 2 questions per chunk
        llm = make_llm(args.llm)
        train, val = (
            generate_qa_embedding_pairs(nodes, llm=llm, cache_path=args.out / f"{name}.jsonl")
            for name, nodes in (("train", train_nodes), ("val", val_nodes))
        )
    else:  # offline: filtered SmolLM2 questions (+ ICT pairs for training), or ICT only
        llm = None if args.llm == "none" else make_llm("local")
        train = generate_offline_pairs(train_nodes, llm=llm, cache_path=args.out / "train.jsonl")
        val = offline_val_questions(val_nodes, llm=llm, cache_path=args.out / "val.jsonl")
    train.save_json(args.out / "train_dataset.json")
    val.save_json(args.out / "val_dataset.json")
    return train, val


def openai_embedding(choice: str) -> Any:
    """``text-embedding-3-small`` when asked for (or, on auto, when a key is set), else None."""
    if choice == "no" or (choice == "auto" and not os.environ.get("OPENAI_API_KEY")):
        return None
    try:
        from llama_index.embeddings.openai import OpenAIEmbedding
    except ImportError:
        if choice == "yes":
            raise SystemExit(
                "error: --compare-openai yes needs: pip install llama-index-embeddings-openai"
            ) from None
        logging.info("llama-index-embeddings-openai is not installed: no OpenAI row")
        return None
    return OpenAIEmbedding(model="text-embedding-3-small")


def hit_rate_table(val: Any, models: dict[str, Any], top_k: int) -> list[str]:
    """The tutorial's first table: hit-rate of a VectorStoreIndex retriever per model."""
    from llama_index_finetune_embed import evaluate_retrieval

    lines = [f"| model | hit-rate@{top_k} | MRR@{top_k} |", "| --- | --- | --- |"]
    for name, model in models.items():
        result = evaluate_retrieval(val, model, top_k=top_k, method="retriever", name=name)
        lines.append(f"| {name} | {result.metrics['hit_rate']:.4f} | {result.metrics['mrr']:.4f} |")
    return lines


def read_published(folder: Path, which: str) -> dict[str, float] | None:
    """The tutorial's published evaluator row for bge-small-en ``base`` or ``finetuned``."""
    path = folder / f"published_bge_small_en_{which}.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    return {col: float(row[f"cos_sim-{col}"]) for col in IR_COLUMNS}


def ir_table(val: Any, models: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The tutorial's second table: InformationRetrievalEvaluator numbers beside the published."""
    from llama_index_finetune_embed import ir_metrics

    header = " | ".join(IR_COLUMNS)
    lines = [f"| model | {header} |", "| --- |" + " --- |" * len(IR_COLUMNS)]
    for name, model in models.items():
        scores = ir_metrics(val, model, max_seq_length=args.max_seq_length)
        values = " | ".join(f"{scores[k]:.4f}" for k in IR_COLUMNS.values())
        lines.append(f"| {name} | {values} |")
    for which in ("base", "finetuned"):
        published = read_published(args.published, which)
        if published is None:
            lines.append(f"(published bge-small-en {which} row not found in {args.published})")
            continue
        values = " | ".join(f"{published[col]:.4f}" for col in IR_COLUMNS)
        lines.append(f"| published bge-small-en {which} | {values} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from llama_index_finetune_embed import (
        SentenceTransformersFinetuneEngine,
        load_embed_model,
        load_finetuned_model,
    )

    train, val = make_datasets(args)
    print(
        f"train: {len(train.queries)} questions over {len(train.corpus)} chunks; "
        f"val: {len(val.queries)} questions over {len(val.corpus)} chunks"
    )
    engine = SentenceTransformersFinetuneEngine(
        train,
        model_id=args.base_model,
        model_output_path=args.out / "model",
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    engine.finetune()
    print(f"finetuned in {engine.metrics['train_seconds']:.1f} s -> {args.out / 'model'}")

    embed_models = {
        "base": load_embed_model(args.base_model),
        "finetuned": load_finetuned_model(args.out / "model"),
    }
    openai_model = openai_embedding(args.compare_openai)
    if openai_model is not None:
        embed_models["text-embedding-3-small"] = openai_model
    print("\n".join(["", *hit_rate_table(val, embed_models, args.top_k)]))
    st_models = {"base": args.base_model, "finetuned": str(args.out / "model")}
    print("\n".join(["", *ir_table(val, st_models, args)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
