"""``finetune-embed``: subcommands that call the stages. Printing and exit codes live here only."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llama_index_finetune_embed import __version__

logger = logging.getLogger("llama_index_finetune_embed")

# Errors a user can fix: printed as one line, exit code 1, no traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``finetune-embed`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except _USER_ERRORS as exc:
        print(f"finetune-embed: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("finetune-embed: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _configure_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    if verbose < 1:
        for noisy in ("httpx", "sentence_transformers", "transformers", "datasets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-embed",
        description="Finetune an embedding model on your own documents and measure the gain.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="all stages: documents -> questions -> finetune -> report")
    run.add_argument("docs", nargs="*", help="files or folders (default: Python's own docs)")
    run.add_argument("--out", required=True, help="output directory (rerun to resume)")
    _add_llm_args(run)
    _add_model_args(run)
    _add_pair_args(run)
    run.add_argument("--val-ratio", type=float, default=0.2, help="share of chunks held out (0.2)")
    run.add_argument("--top-k", type=int, default=5, help="retrieval depth for the report (5)")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="documents or chunks -> question dataset JSON")
    gen.add_argument("docs", nargs="*", help="files or folders (default: Python's own docs)")
    gen.add_argument("--out", required=True, help="dataset JSON to write")
    gen.add_argument("--cache", default=None, help="resume cache (default: OUT.cache.jsonl)")
    _add_llm_args(gen)
    _add_pair_args(gen)
    gen.set_defaults(func=_cmd_generate)

    ft = sub.add_parser("finetune", help="dataset JSON -> finetuned model directory")
    ft.add_argument("train", help="training dataset JSON")
    ft.add_argument("--out", required=True, help="model directory to write")
    ft.add_argument("--val", default=None, help="validation dataset JSON (keeps the best step)")
    _add_model_args(ft)
    ft.set_defaults(func=_cmd_finetune)

    ev = sub.add_parser("evaluate", help="compare embedding models on a dataset JSON")
    ev.add_argument("dataset", help="dataset JSON with held-out questions")
    ev.add_argument("models", nargs="+", help="model ids/paths, optionally NAME=MODEL")
    ev.add_argument("--top-k", type=int, default=5)
    ev.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="tokens per text for every model given by id/path (compare at equal length)",
    )
    ev.add_argument("--report", default=None, help="write a markdown report here")
    ev.add_argument("--plot", default=None, help="write a PNG chart here")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def _add_pair_args(p: argparse.ArgumentParser) -> None:
    """Chunking and training-pair options shared by ``run`` and ``generate``."""
    p.add_argument("--chunk-size", type=int, default=512, help="tokens per chunk (512)")
    p.add_argument("--chunk-overlap", type=int, default=64, help="token overlap (64)")
    p.add_argument("--max-chunks", type=int, default=None, help="sample at most N chunks")
    p.add_argument(
        "--offline-train",
        choices=("mix", "pseudo"),
        default="pseudo",
        help="offline training pairs: inverse-cloze pseudo-queries (pseudo, the default: measured "
        "best) or local-LLM questions + pseudo-queries (mix)",
    )
    p.add_argument("--seed", type=int, default=0)


def _add_llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--llm",
        default="auto",
        help="auto (OpenAI if OPENAI_API_KEY is set, else local), local, none, openai:MODEL",
    )
    p.add_argument("--questions-per-chunk", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=16, help="LLM calls in flight (16)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base-model",
        default="local:all-MiniLM-L6-v2",
        help="model id or path (default: packaged all-MiniLM-L6-v2; e.g. BAAI/bge-small-en-v1.5)",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (recipe default)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="chunks per training batch (recipe default)")
    p.add_argument("--max-seq-length", type=int, default=None, help="tokens per text (model max)")
    p.add_argument("--base-weight", type=float, default=None,
                   help="base share of the averaged weights (recipe default 0.5; 0 = as trained)")
    p.add_argument("--no-guard", dest="guard", action="store_false",
                   help="hand back the model even where it loses to its base (see README)")


# -- commands ---------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.pipeline import RunConfig, run_pipeline

    config = RunConfig(
        docs=args.docs,
        out=args.out,
        llm=args.llm,
        base_model=args.base_model,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        max_chunks=args.max_chunks,
        questions_per_chunk=args.questions_per_chunk,
        val_ratio=args.val_ratio,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        base_weight=args.base_weight,
        guard=args.guard,
        top_k=args.top_k,
        num_workers=args.num_workers,
        offline_train=args.offline_train,
        seed=args.seed,
    )
    result = run_pipeline(config, announce=lambda line: print(line, flush=True))
    print()
    print(result.table_markdown)
    print(f"\nreport: {result.report_path}\nmodel:  {result.model_path}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.documents import (
        chunk_documents,
        load_documents,
        stdlib_documents,
    )
    from llama_index_finetune_embed.pipeline import (
        RunConfig,
        make_llm,
        resolve_choices,
        sample_chunks,
        training_pairs,
    )

    out = Path(args.out)
    config = RunConfig(
        docs=args.docs,
        out=str(out.parent),
        llm=args.llm,
        questions_per_chunk=args.questions_per_chunk,
        num_workers=args.num_workers,
        offline_train=args.offline_train,
        seed=args.seed,
    )
    choice = resolve_choices(config).llm
    print(f"question source: {choice}", flush=True)
    docs = load_documents(args.docs, show_progress=True) if args.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    nodes = sample_chunks(nodes, args.max_chunks, seed=args.seed)
    cache = Path(args.cache or f"{out}.cache.jsonl")
    dataset = training_pairs(nodes, choice, make_llm(choice), config, cache)
    dataset.save_json(out)
    print(f"wrote {out}: {len(dataset)} queries over {len(dataset.corpus)} chunks")


def _cmd_finetune(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    train = EmbeddingQAFinetuneDataset.from_json(args.train)
    val = EmbeddingQAFinetuneDataset.from_json(args.val) if args.val else None
    options = {
        k: getattr(args, k)
        for k in ("epochs", "batch_size", "max_seq_length", "base_weight")
        if getattr(args, k) is not None
    }
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=args.base_model, model_output_path=args.out, val_dataset=val,
        guard=args.guard, **options,
    )  # fmt: skip
    engine.finetune()
    print(f"wrote {args.out}")
    for key, value in sorted(engine.metrics.items()):
        if key != "guard":
            print(f"  {key}: {value}")
    if "guard" in engine.metrics:
        print(engine.metrics["guard"]["message"])


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.evaluate import compare_embed_models

    models: dict[str, str] = {}
    for spec in args.models:
        name, sep, model = spec.partition("=")
        if not sep:
            name, model = Path(spec).name or spec, spec
        if name in models:
            raise ValueError(f"two models are called {name!r}: name them, e.g. base={model}")
        models[name] = model
    table = compare_embed_models(
        args.dataset,
        models,
        top_k=args.top_k,
        max_seq_length=args.max_seq_length,
        show_progress=True,
    )
    text = table.to_markdown()
    print(text)
    if args.report:
        from llama_index_finetune_embed._io import atomic_write_text

        atomic_write_text(args.report, text + "\n")
        print(f"wrote {args.report}")
    if args.plot:
        print(f"wrote {table.plot(args.plot)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
