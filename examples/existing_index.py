"""Add finetuning to an index you already have: the main job on its chunks, then query the new one.

1. Your index: a persisted ``VectorStoreIndex`` (``--persist-dir``) or a vector store
   (``--from-store postgresql://...``, ``qdrant:...``, ``chroma:...``). If the folder holds no
   index yet, one is built from ``--docs`` with ``--current-model`` and persisted there,
   standing in for yours.
2. The main job (what ``finetune-embed run --from-index/--from-store`` runs): your chunks as
   they are (no re-chunking), questions for them, a finetuned model, and a report whose first row
   is the model your index uses today (scored on the vectors it holds). The index the report
   chose goes to ``--out``/index, or into a new table/collection with ``--to-store``; yours is
   never written to.
3. Load the new index with ``load_window_index`` and answer a question with its sources
   (``--llm none``: the sources only, no answer).

Usage:
    python examples/existing_index.py --persist-dir storage --llm local --max-chunks 200
    python examples/existing_index.py \
        --from-store "postgresql://me@localhost:5432/rag?table=chunks" \
        --current-model BAAI/bge-small-en-v1.5 \
        --to-store "postgresql://me@localhost:5432/rag?table=chunks_finetuned"
    # later, in any process: the new index and the model that embedded it
    #   index = load_window_index("existing_index_out/index")
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persist-dir", type=Path, default=Path("storage"))
    parser.add_argument("--from-store", default=None, help="read the index from this store URL")
    parser.add_argument("--to-store", default=None, help="write the new index into this URL")
    parser.add_argument(
        "--docs",
        nargs="+",
        default=[SHARED / "10k" / "lyft_2021.pdf"],
        help="documents for a new index when --persist-dir holds none",
    )
    parser.add_argument("--max-chunks", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--current-model", default="local:all-MiniLM-L6-v2",
                        help="the model your index uses today (and, here, the one to finetune)")
    parser.add_argument("--base-model", default=None, help="model to finetune (default: current)")
    parser.add_argument("--llm", default="local", help="none, local or openai:<model>")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--val-ratio", type=float, default=0.2)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--question", default=None, help="default: a held-out question")
    parser.add_argument("--out", type=Path, default=Path("existing_index_out"))
    args = parser.parse_args(argv)
    if args.llm not in ("none", "local") and not args.llm.startswith("openai:"):
        parser.error(f"--llm must be none, local or openai:<model>, got {args.llm!r}")
    if args.current_model.startswith("openai:") and args.base_model is None:
        parser.error("an API --current-model cannot be finetuned: give --base-model too")
    return args


def ensure_index(args: argparse.Namespace) -> None:
    """Build and persist a stand-in for your index in ``--persist-dir`` if none is there."""
    if args.from_store or (args.persist_dir / "docstore.json").is_file():
        return
    from llama_index.core import VectorStoreIndex

    from llama_index_finetune_embed import chunk_documents, load_documents, load_embed_model
    from llama_index_finetune_embed.documents import sample_chunks

    docs = load_documents(args.docs)
    overlap = min(64, args.chunk_size // 4)
    nodes = chunk_documents(docs, chunk_size=args.chunk_size, chunk_overlap=overlap)
    index = VectorStoreIndex(sample_chunks(nodes, args.max_chunks),
                             embed_model=load_embed_model(args.current_model))  # fmt: skip
    index.storage_context.persist(persist_dir=str(args.persist_dir))
    print(f"no index in {args.persist_dir}: built one from {len(docs)} document(s)")


def run_job(args: argparse.Namespace) -> Any:
    """The main job on the index's own chunks (``finetune-embed run --from-index/--from-store``)."""
    from llama_index_finetune_embed import RunConfig, run_pipeline

    source = {"from_store": args.from_store} if args.from_store else {
        "from_index": str(args.persist_dir)}  # fmt: skip
    options = {k: getattr(args, k) for k in ("epochs", "batch_size") if getattr(args, k)}
    config = RunConfig(
        out=str(args.out), **source, current_model=args.current_model,
        base_model=args.base_model or args.current_model, to_store=args.to_store,
        llm=args.llm, val_ratio=args.val_ratio, top_k=args.top_k, max_chunks=args.max_chunks,
        **options,
    )  # fmt: skip
    return run_pipeline(config, announce=print)


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
    import json

    from llama_index_finetune_embed import load_window_index

    # 1. your index (a stand-in built here when there is none)
    ensure_index(args)
    # 2. the main job on its chunks: report.md says which row won, and why
    result = run_job(args)
    print(f"\n{result.table_markdown}\nserved: {result.served.get('row')}; report: "
          f"{result.report_path}")  # fmt: skip
    # 3. the new index, as report.md's last lines load it
    index = load_window_index(result.index_path)
    val = json.loads((args.out / "val_dataset.json").read_text(encoding="utf-8"))
    answer(index, args.question or next(iter(val["queries"].values())), args.llm, args.top_k)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
