"""The main job at corpus scale: ``../shared/data/filings`` (24 public 10-K PDFs, 3,014 pages).

Runs ``run_pipeline`` (offline defaults, local LLM) on the filings and prints, per stage, its
wall time, plus pages/s of the parse, vectors/s of the index build, the number of held-out
questions written, and the peak RSS of this process and of its children (the parse workers).

``--settings before`` runs the same job with the settings the package had before issue #29, in
the same way, so a ratio can be stated: documents parsed in one process with no parse cache,
held-out questions for every held-out chunk (``max_val_chunks`` unbounded), embed models loaded
in fp32 at LlamaIndex's batch of 10. ``--settings now`` (default) uses the defaults. Run each in
a fresh ``--out`` (a rerun reuses finished stages) and one at a time (heavy).

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_scale.py --out /tmp/scale-now
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_scale.py --settings before \\
        --out /tmp/scale-before
    # a smoke run: the first 2 filings
    .venv/bin/python benchmarks/bench_scale.py --files 2 --out /tmp/scale-smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FILINGS = ROOT.parent / "shared" / "data" / "filings"


def before_settings() -> None:
    """Put the package back to its pre-#29 settings in this process (the window index still
    sends its texts longest first)."""
    from llama_index_finetune_embed import documents, embeddings

    embeddings.EMBED_BATCH_SIZE = 10
    embeddings.native_bf16 = lambda device="cpu": False
    real = documents.load_documents

    def load_documents(paths: Any, **kwargs: Any) -> Any:
        return real(paths, **{**kwargs, "cache_dir": None, "num_workers": 1})

    documents.load_documents = load_documents


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--settings", choices=("now", "before"), default="now")
    p.add_argument("--files", type=int, default=None, help="only the first N filings")
    args = p.parse_args(argv)
    if not FILINGS.is_dir():
        sys.exit(f"{FILINGS} is not here: this benchmark needs ../shared/data/filings")
    files = sorted(FILINGS.glob("*.pdf"))[: args.files]
    docs_dir = args.out / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for f in files:  # links: the job reads exactly these files, wherever --out is
        link = docs_dir / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    if args.settings == "before":
        before_settings()

    from llama_index_finetune_embed.cli import _configure_logging
    from llama_index_finetune_embed.pipeline import RunConfig, run, run_pipeline

    _configure_logging(0)  # as `finetune-embed run` logs: INFO lines and every progress bar

    times: dict[str, float] = {}

    def timed(stage: Any) -> Any:
        def make(job: Any) -> Any:
            start = time.perf_counter()
            try:
                return stage.make(job)
            finally:
                times[stage.name] = time.perf_counter() - start
                print(f"--- {stage.name}: {times[stage.name]:.0f} s", flush=True)

        return dataclasses.replace(stage, make=make)

    run.STAGE_TABLE = tuple(timed(s) for s in run.STAGE_TABLE)
    extra = {"max_val_chunks": 10**9} if args.settings == "before" else {}
    config = RunConfig(out=str(args.out / "run"), docs=[str(docs_dir)], llm="local", **extra)
    start = time.perf_counter()
    run_pipeline(config, announce=lambda line: print(line, flush=True))
    wall = time.perf_counter() - start
    summary(args, files, times, wall)


def summary(args: argparse.Namespace, files: list[Path], times: dict[str, float],
            wall: float) -> None:  # fmt: skip
    out = args.out / "run"
    chunks = json.loads((out / "chunks.json").read_text(encoding="utf-8"))
    pages = len({(c["metadata"].get("file_name"), c["metadata"].get("page_label"))
                 for c in chunks})  # fmt: skip
    val = json.loads((out / "val_dataset.json").read_text(encoding="utf-8"))
    index = json.loads((out / "index" / "index_store.json").read_text(encoding="utf-8"))
    vectors = sum(len(json.loads(v["__data__"])["nodes_dict"])
                  for v in index["index_store/data"].values())  # fmt: skip
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n## bench_scale ({args.settings}): {len(files)} filings, {pages} pages with text, "
          f"{len(chunks)} chunks")  # fmt: skip
    print("| stage | seconds |\n|---|--:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.0f} |")
    print(f"| **end to end** | **{wall:.0f}** |")
    if "chunks" in times:
        print(f"parse + chunk: {pages / times['chunks']:.1f} pages/s")
    if "index" in times:
        print(f"index: {vectors} vectors, {vectors / times['index']:.1f} vectors/s (build)")
    print(f"held-out questions: {len(val['queries'])} over {len(val['corpus'])} held-out chunks")
    print(f"peak RSS: {self_rss:.0f} MiB (this process), {child_rss:.0f} MiB (largest child)")


if __name__ == "__main__":
    main()
