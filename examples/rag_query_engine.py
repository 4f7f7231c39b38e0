"""Serve a finetuned model in a RAG query engine: ``Settings.embed_model`` + ``as_query_engine()``.

Loads a finetuned model directory in a fresh process (e.g. ``runs/lyft/model`` written by
``finetune-embed run``, or the ``model_output_path`` of ``SentenceTransformersFinetuneEngine``)
with ``load_finetuned_model(DIR)``, which passes the query/document prompts saved with the model
to ``HuggingFaceEmbedding``. ``--plain`` loads it as ``HuggingFaceEmbedding(model_name=DIR)``
instead: that also works, but for a model trained with prompts (bge, e5) it embeds without them.

It sets the model as ``Settings.embed_model``, indexes ``--docs`` with ``build_window_index``
(each chunk read whole, in windows that fit the model, and retrieved by its best window; ``--plain``
also builds a plain ``VectorStoreIndex``, which reads each chunk's first tokens only) and
asks ``index.as_query_engine()`` each ``--question``, answering with the local SmolLM2
(``--llm local``, offline, a very small model: rough answers), OpenAI (``--llm
openai:gpt-4o-mini``, needs OPENAI_API_KEY) or no LLM (``--llm none``: retrieval only). Prints,
per question, the answer and the retrieved sources with their similarity scores.

Usage:
    finetune-embed run ../shared/data/10k/lyft_2021.pdf --out runs/lyft
    python examples/rag_query_engine.py --model runs/lyft/model \\
        --docs ../shared/data/10k/lyft_2021.pdf --llm local \\
        --question "How does Lyft make money?"
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_QUESTIONS = [
    "How does Lyft make money?",
    "What are the main risk factors Lyft describes?",
    "How did COVID-19 affect ridership?",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="finetuned model directory")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="what LlamaIndex alone gives: HuggingFaceEmbedding(model_name=DIR), ignoring saved "
        "prompts, in a plain VectorStoreIndex",
    )
    parser.add_argument("--docs", nargs="+", default=[SHARED / "10k" / "lyft_2021.pdf"])
    parser.add_argument("--max-chunks", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--llm", default="local", help="none, local or openai:<model>")
    parser.add_argument(
        "--question",
        action="append",
        default=None,
        help="repeatable; default: a few questions about Lyft's 10-K",
    )
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)
    if args.llm not in ("none", "local") and not args.llm.startswith("openai:"):
        parser.error(f"--llm must be none, local or openai:<model>, got {args.llm!r}")
    if not (args.model / "modules.json").is_file():
        parser.error(
            f"--model {args.model} is not a saved sentence-transformers model (no modules.json): "
            "pass the directory a finetuning run wrote, e.g. runs/lyft/model"
        )
    return args


def load_model(model_dir: Path, plain: bool) -> Any:
    """The finetuned model as a LlamaIndex embedding (saved prompts kept unless ``plain``)."""
    if plain:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        return HuggingFaceEmbedding(model_name=str(model_dir), device="cpu")
    from llama_index_finetune_embed import load_finetuned_model

    return load_finetuned_model(model_dir)


def query_engine(index: Any, llm: str, top_k: int) -> Any:
    """``index.as_query_engine()`` answering with ``Settings.llm``, or retrieval only."""
    if llm == "none":
        from llama_index.core.llms import MockLLM
        from llama_index.core.response_synthesizers.no_text import NoText

        # NoText built here: the synthesizer factory would fall back to OpenAI for its LLM.
        return index.as_query_engine(
            llm=MockLLM(), similarity_top_k=top_k, response_synthesizer=NoText(llm=MockLLM())
        )
    return index.as_query_engine(similarity_top_k=top_k)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from llama_index.core import Settings, VectorStoreIndex

    from llama_index_finetune_embed import build_window_index, chunk_documents, load_documents
    from llama_index_finetune_embed.documents import sample_chunks
    from llama_index_finetune_embed.pipeline import make_llm

    Settings.embed_model = load_model(args.model, args.plain)
    if args.llm != "none":
        Settings.llm = make_llm(args.llm)
    overlap = min(64, args.chunk_size // 4)
    nodes = chunk_documents(
        load_documents(args.docs), chunk_size=args.chunk_size, chunk_overlap=overlap
    )
    chunks = sample_chunks(nodes, args.max_chunks)
    if args.plain:
        index = VectorStoreIndex(chunks)
    else:
        index = build_window_index(chunks, Settings.embed_model)
    prompt = getattr(Settings.embed_model, "query_instruction", None) or ""
    print(f"indexed {len(chunks)} chunks ({len(index.index_struct.nodes_dict)} vectors) with "
          f"{args.model} (query prompt {prompt!r})")  # fmt: skip
    engine = query_engine(index, args.llm, args.top_k)
    for question in args.question or DEFAULT_QUESTIONS:
        response = engine.query(question)
        print(f"\nQ: {question}")
        if args.llm != "none":
            print(f"A: {str(response).strip()}")
        for source in response.source_nodes:
            text = " ".join(source.node.get_content().split())[:100]
            name = source.node.metadata.get("file_name", source.node.node_id[:12])
            print(f"  [{source.score:.3f}] {name}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
