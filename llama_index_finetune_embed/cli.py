"""``finetune-embed``: subcommands that call the stages. Printing and exit codes live here only."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from llama_index_finetune_embed._version import __version__

logger = logging.getLogger("llama_index_finetune_embed")

# Errors a user can fix: printed as one line, exit code 1, no traceback. OSError covers every
# output problem (exists, not a directory, read-only, disk full): its message names the path.
_USER_ERRORS = (ValueError, OSError, ImportError)


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
    if isinstance(exc, OSError) and exc.strerror and exc.filename:  # "[Errno 28] ..." -> plain
        text = f"{exc.filename}: {exc.strerror}"
    else:
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


# Which RunConfig fields each subcommand takes; type, default, choices and help come from the field.
_LLM_OPTIONS = ("llm", "questions_per_chunk", "num_workers", "max_rpm", "max_tpm", "max_calls",
                "budget_tokens")  # fmt: skip
_PAIR_OPTIONS = (
    "chunk_size", "chunk_overlap", "max_chunks", "max_train_chunks", "offline_train", "seed"
)
_MODEL_OPTIONS = ("base_model", "epochs", "batch_size", "max_seq_length", "base_weight", "guard")
_INDEX_OPTIONS = ("from_index", "from_store", "current_model", "to_store")
_RUN_OPTIONS = (
    _INDEX_OPTIONS + _LLM_OPTIONS + _MODEL_OPTIONS + _PAIR_OPTIONS
    + ("val_ratio", "top_k", "embed_on")
)  # fmt: skip


def _build_parser() -> argparse.ArgumentParser:
    from llama_index_finetune_embed.pipeline import STAGES

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
    run.add_argument("--dry-run", action="store_true",
                     help="print the API calls, tokens, time and cost it would take; send nothing")
    run.add_argument("--restart", choices=STAGES, default=None,
                     help="redo this stage and every later one, even if its inputs are unchanged")
    _add_config_options(run, _RUN_OPTIONS)
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="documents or chunks -> question dataset JSON")
    gen.add_argument("docs", nargs="*", help="files or folders (default: Python's own docs)")
    gen.add_argument("--out", required=True, help="dataset JSON to write")
    gen.add_argument("--cache", default=None, help="resume cache (default: OUT.cache.jsonl)")
    gen.add_argument("--dry-run", action="store_true",
                     help="print the API calls, tokens, time and cost it would take; send nothing")
    _add_config_options(gen, _LLM_OPTIONS + _PAIR_OPTIONS)
    gen.set_defaults(func=_cmd_generate)

    ft = sub.add_parser("finetune", help="dataset JSON -> finetuned model directory")
    ft.add_argument("train", help="training dataset JSON")
    ft.add_argument("--out", required=True, help="model directory to write")
    ft.add_argument("--val", default=None, help="validation dataset JSON (keeps the best step)")
    _add_config_options(ft, _MODEL_OPTIONS)
    ft.set_defaults(func=_cmd_finetune)

    ev = sub.add_parser("evaluate", help="compare embedding models on a dataset JSON")
    ev.add_argument("dataset", help="dataset JSON with held-out questions")
    ev.add_argument("models", nargs="+", help="model ids/paths, optionally NAME=MODEL")
    _add_config_options(ev, ("top_k",))
    ev.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="tokens per text for every model given by id/path (compare at equal length)",
    )
    ev.add_argument(
        "--index",
        choices=("plain", "windows", "both"),
        default="plain",
        help="plain: one vector per chunk (VectorStoreIndex); windows: build_window_index (long "
        "chunks read whole, each scored by its best window); both: a row of each per model",
    )
    ev.add_argument("--report", default=None, help="write a markdown report here")
    ev.add_argument("--plot", default=None, help="write a PNG chart here")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def _add_config_options(p: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """One ``--flag`` per RunConfig field: its type, default, choices and help come from it."""
    from llama_index_finetune_embed.pipeline import RunConfig

    for name in names:
        field = RunConfig.model_fields[name]
        default = field.get_default(call_default_factory=True)
        flag = name.replace("_", "-")
        kind, choices = _option_type(field.annotation)
        if kind is bool:  # on by default: the flag turns it off
            help_ = f"turn off what is on by default: {field.description}"
            p.add_argument(f"--no-{flag}", dest=name, action="store_false", help=help_)
            continue
        shown = "" if default is None or "default:" in str(field.description) else f" ({default})"
        p.add_argument(f"--{flag}", type=kind, default=default, choices=choices,
                       help=f"{field.description}{shown}")  # fmt: skip


def _option_type(annotation: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(argparse type, choices) of a field annotation such as ``int | None`` or ``Literal``."""
    if get_origin(annotation) is Literal:
        return str, get_args(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    return (args[0] if args else annotation), None


def _run_config(**values: Any) -> Any:
    """A RunConfig, or one ValueError naming the flag, the value and the rule it breaks."""
    from llama_index.core.bridge.pydantic import ValidationError

    from llama_index_finetune_embed.pipeline import RunConfig

    try:
        return RunConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        raise ValueError(
            f"--{field.replace('_', '-')} {err.get('input')!r}: {err['msg'].lower()}"
        ) from None


def _output_file(path: str, flag: str) -> Path:
    """``path`` as a file to write later, or one error now: not a directory, folder writable."""
    from llama_index_finetune_embed._io import writable_dir

    out = Path(path).expanduser()
    if out.is_dir():
        raise IsADirectoryError(f"{flag} {out} is a directory; give a file name")
    writable_dir(out.parent if str(out.parent) else ".", f"{flag}'s folder")
    if out.exists() and not os.access(out, os.W_OK):
        raise PermissionError(f"{flag} {out} exists and is read-only")
    return out


# -- commands ---------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.pipeline import dry_run, run_pipeline

    config = _run_config(
        docs=args.docs, out=args.out, **{name: getattr(args, name) for name in _RUN_OPTIONS}
    )
    if args.dry_run:
        print("\n".join(dry_run(config)))
        return
    result = run_pipeline(
        config, restart=args.restart, announce=lambda line: print(line, flush=True)
    )
    print()
    print(result.table_markdown)
    print(f"\nreport: {result.report_path}\nmodel:  {result.model_path}")
    where = ""
    if config.to_store:
        from llama_index_finetune_embed.serving import parse_store_url

        where = f" -> {parse_store_url(config.to_store).redacted}"
    print(f"index:  {result.index_path}{where}  (load_window_index, see docs/main-job.md)")


def _cmd_generate(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.documents import (
        chunk_documents,
        load_documents,
        sample_chunks,
        stdlib_documents,
    )
    from llama_index_finetune_embed.pipeline import make_llm, resolve_choices, training_pairs

    out = _output_file(args.out, "--out")
    options = _LLM_OPTIONS + _PAIR_OPTIONS
    config = _run_config(
        docs=args.docs, out=str(out.parent), **{name: getattr(args, name) for name in options}
    )
    choice = resolve_choices(config).llm
    if choice == "local" and config.offline_train == "pseudo":
        print("question source: inverse-cloze pseudo-queries (--offline-train pseudo, measured "
              "best offline); the local LLM writes questions only with --offline-train mix",
              flush=True)  # fmt: skip
    else:
        print(f"question source: {choice}", flush=True)
    docs = load_documents(args.docs) if args.docs else stdlib_documents()
    nodes = chunk_documents(docs, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
    nodes = sample_chunks(nodes, config.max_chunks, seed=config.seed)
    cache = Path(args.cache or f"{out}.cache.jsonl")
    if args.dry_run:
        _print_estimate(nodes, choice, config, cache)
        return
    dataset = training_pairs(nodes, choice, make_llm(choice), config, cache)
    dataset.save_json(out)
    print(f"wrote {out}: {len(dataset)} queries over {len(dataset.corpus)} chunks")


def _print_estimate(nodes: Sequence[Any], choice: str, config: Any, cache: Path) -> None:
    """``generate --dry-run``: what the API calls would be and cost; nothing is sent."""
    from llama_index_finetune_embed.pipeline import NO_API_CALLS, question_bill

    estimate = question_bill(nodes, choice, config, cache)
    print("\n".join(estimate.lines()) if estimate else f"chunks: {len(nodes)}; {NO_API_CALLS}")


def _cmd_finetune(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    config = _run_config(out=args.out, **{name: getattr(args, name) for name in _MODEL_OPTIONS})
    train = EmbeddingQAFinetuneDataset.from_json(args.train)
    val = EmbeddingQAFinetuneDataset.from_json(args.val) if args.val else None
    recipe = {
        name: getattr(config, name)
        for name in ("epochs", "batch_size", "max_seq_length", "base_weight")
        if getattr(config, name) is not None
    }
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=config.base_model, model_output_path=args.out, val_dataset=val,
        guard=config.guard, **recipe,
    )  # fmt: skip
    engine.finetune()
    print(f"wrote {args.out}")
    for key, value in sorted(engine.metrics.items()):
        if key != "guard":
            print(f"  {key}: {value}")
    if "guard" in engine.metrics:
        print(engine.metrics["guard"]["message"])


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from llama_index_finetune_embed.embeddings import check_max_seq_length, resolve_model_id
    from llama_index_finetune_embed.evaluate import compare_embed_models

    for target, flag in ((args.report, "--report"), (args.plot, "--plot")):
        if target:
            _output_file(target, flag)  # checked before the evaluation, not after it
    models: dict[str, str] = {}
    for spec in args.models:
        name, sep, model = spec.partition("=")
        if not sep:
            name, model = Path(spec).name or spec, spec
        if name in models:
            raise ValueError(f"two models are called {name!r}: name them, e.g. base={model}")
        models[name] = model
        check_max_seq_length(resolve_model_id(model), args.max_seq_length)
    table = compare_embed_models(
        args.dataset,
        models,
        top_k=args.top_k,
        max_seq_length=args.max_seq_length,
        index=args.index,
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
