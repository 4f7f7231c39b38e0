"""Add finetuning to an index you already have: finetune on its own nodes, re-embed, persist, query.

1. Load a persisted ``VectorStoreIndex`` (``--persist-dir``; if the folder holds no index yet,
   one is built from ``--docs`` with the base model and persisted there, standing in for yours).
2. Take its nodes from the docstore, hold out ``--val-ratio`` of them, and write questions for
   both parts: ``--llm none`` uses pseudo-queries (a sentence of the chunk, no LLM), ``local``
   SmolLM2 offline, ``openai:<model>`` an OpenAI model.
3. Score the index's retriever on the held-out questions (hit-rate and MRR @``--top-k``, over
   *all* the index's nodes), finetune the base model on the training questions, re-embed the same
   nodes with the finetuned model, persist the new index to ``--new-persist-dir`` (the old one is
   kept for rollback), load it back and score it again.
4. Answer a question with a query engine over the re-embedded index, printing its sources
   (``--llm none`` prints the retrieved sources only, no answer).

Prints the hit-rate/MRR table (before/after), where the model and index were saved, and the
answer with its sources.

Usage:
    python examples/existing_index.py --persist-dir storage --llm local --max-chunks 200
    # later, in any process: the index and the model that embedded it
    #   embed_model = load_finetuned_model("existing_index_out/model")
    #   index = load_index_from_storage(
    #       StorageContext.from_defaults(persist_dir="storage_finetuned"), embed_model=embed_model)

An index must be queried with the model that embedded it: after re-embedding, always load it
with the finetuned model.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persist-dir", type=Path, default=Path("storage"))
    parser.add_argument(
        "--new-persist-dir",
        type=Path,
        default=None,
        help="where the re-embedded index goes (default: <persist-dir>_finetuned)",
    )
    parser.add_argument(
        "--docs",
        nargs="+",
        default=[SHARED / "10k" / "lyft_2021.pdf"],
        help="documents for a new index when --persist-dir holds none",
    )
    parser.add_argument("--max-chunks", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--base-model", default="local:all-MiniLM-L6-v2")
    parser.add_argument("--llm", default="local", help="none, local or openai:<model>")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-ratio", type=float, default=0.2)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--question", default=None, help="default: a held-out question")
    parser.add_argument("--out", type=Path, default=Path("existing_index_out"))
    args = parser.parse_args(argv)
    if args.llm not in ("none", "local") and not args.llm.startswith("openai:"):
        parser.error(f"--llm must be none, local or openai:<model>, got {args.llm!r}")
    if not 0.0 < args.val_ratio < 1.0:
        parser.error(f"--val-ratio must be between 0 and 1, got {args.val_ratio}")
    args.new_persist_dir = args.new_persist_dir or Path(f"{args.persist_dir}_finetuned")
    return args


def load_or_build_index(args: argparse.Namespace, base: Any) -> Any:
    """The persisted index in ``--persist-dir``; built from ``--docs`` first if there is none."""
    from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage

    if (args.persist_dir / "docstore.json").is_file():
        storage = StorageContext.from_defaults(persist_dir=str(args.persist_dir))
        return load_index_from_storage(storage, embed_model=base)
    from llama_index_finetune_embed import chunk_documents, load_documents
    from llama_index_finetune_embed.documents import sample_chunks

    docs = load_documents(args.docs)
    overlap = min(64, args.chunk_size // 4)
    nodes = chunk_documents(docs, chunk_size=args.chunk_size, chunk_overlap=overlap)
    index = VectorStoreIndex(sample_chunks(nodes, args.max_chunks), embed_model=base)
    index.storage_context.persist(persist_dir=str(args.persist_dir))
    print(f"no index in {args.persist_dir}: built one from {len(docs)} document(s)")
    return index


def split_nodes(nodes: list[Any], val_ratio: float, seed: int = 0) -> tuple[list, list]:
    """(train, held-out) nodes, by a seeded shuffle of the node ids."""
    ids = sorted(n.node_id for n in nodes)
    random.Random(seed).shuffle(ids)
    held_out = set(ids[: min(len(ids) - 1, max(1, round(val_ratio * len(ids))))])
    train = [n for n in nodes if n.node_id not in held_out]
    return train, [n for n in nodes if n.node_id in held_out]


def write_questions(nodes: list[Any], llm: str, cache: Path, *, train: bool) -> Any:
    """Questions for ``nodes``: LLM-written, filtered local ones, or pseudo-queries (``none``)."""
    from llama_index_finetune_embed import (
        generate_offline_pairs,
        generate_qa_embedding_pairs,
        offline_val_questions,
    )
    from llama_index_finetune_embed.pipeline import make_llm

    if llm.startswith("openai:"):
        return generate_qa_embedding_pairs(nodes, llm=make_llm(llm), cache_path=cache)
    model = None if llm == "none" else make_llm("local")
    if train:
        return generate_offline_pairs(nodes, llm=model, cache_path=cache)
    return offline_val_questions(nodes, llm=model, cache_path=cache)


def over_all_nodes(questions: Any, nodes: list[Any]) -> Any:
    """The held-out questions against every node of the index (what its retriever searches)."""
    from llama_index.core.schema import MetadataMode

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.generate.pseudo import source_chunk_id

    return EmbeddingQAFinetuneDataset(
        queries=dict(questions.queries),
        corpus={n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes},
        relevant_docs={
            qid: sorted({source_chunk_id(d) for d in docs})
            for qid, docs in questions.relevant_docs.items()
        },
    )


def score(dataset: Any, index: Any, top_k: int) -> dict[str, float]:
    from llama_index_finetune_embed import evaluate_retrieval

    result = evaluate_retrieval(dataset, retriever=index, top_k=top_k, n_resamples=200)
    return {"hit_rate": result.metrics["hit_rate"], "mrr": result.metrics["mrr"]}


def reembed_and_persist(nodes: list[Any], embed_model: Any, persist_dir: Path) -> Any:
    """A new index over the same nodes, embedded by ``embed_model``, persisted and loaded back."""
    from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage

    fresh = [n.model_copy(update={"embedding": None}) for n in nodes]
    VectorStoreIndex(fresh, embed_model=embed_model).storage_context.persist(str(persist_dir))
    storage = StorageContext.from_defaults(persist_dir=str(persist_dir))
    return load_index_from_storage(storage, embed_model=embed_model)


def answer(index: Any, question: str, llm: str, top_k: int) -> None:
    """Print the query engine's answer (unless ``--llm none``) and the sources it retrieved."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.response_synthesizers.no_text import NoText

    from llama_index_finetune_embed.pipeline import make_llm

    if llm == "none":  # retrieval only: no LLM is called (NoText built here: the factory
        # would fall back to Settings.llm, i.e. OpenAI)
        engine = index.as_query_engine(
            llm=MockLLM(), similarity_top_k=top_k, response_synthesizer=NoText(llm=MockLLM())
        )
    else:
        engine = index.as_query_engine(llm=make_llm(llm), similarity_top_k=top_k)
    response = engine.query(question)
    print(f"\nQ: {question}")
    if llm != "none":
        print(f"A: {str(response).strip()}")
    for source in response.source_nodes:
        text = " ".join(source.node.get_content().split())[:100]
        print(f"  [{source.score:.3f}] {source.node.node_id[:12]}  {text}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from llama_index_finetune_embed import (
        SentenceTransformersFinetuneEngine,
        load_embed_model,
        load_finetuned_model,
    )

    base = load_embed_model(args.base_model)
    index = load_or_build_index(args, base)
    nodes = list(index.docstore.docs.values())
    train_nodes, val_nodes = split_nodes(nodes, args.val_ratio)
    args.out.mkdir(parents=True, exist_ok=True)
    train = write_questions(train_nodes, args.llm, args.out / "train.jsonl", train=True)
    held_out = over_all_nodes(
        write_questions(val_nodes, args.llm, args.out / "val.jsonl", train=False), nodes
    )
    before = score(held_out, index, args.top_k)

    engine = SentenceTransformersFinetuneEngine(
        train, model_id=args.base_model, model_output_path=args.out / "model",
        epochs=args.epochs, batch_size=args.batch_size,
    )  # fmt: skip
    engine.finetune()
    finetuned = load_finetuned_model(args.out / "model")
    new_index = reembed_and_persist(nodes, finetuned, args.new_persist_dir)
    after = score(held_out, new_index, args.top_k)

    print(f"\n{len(held_out.queries)} held-out questions over all {len(nodes)} nodes of the index")
    print(f"| index | hit-rate@{args.top_k} | MRR@{args.top_k} |\n| --- | --- | --- |")
    for name, scores in (("before (base model)", before), ("after (finetuned)", after)):
        print(f"| {name} | {scores['hit_rate']:.4f} | {scores['mrr']:.4f} |")
    print(f"finetuned model: {args.out / 'model'}; re-embedded index: {args.new_persist_dir}")
    answer(new_index, args.question or next(iter(held_out.queries.values())), args.llm, args.top_k)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
