"""Finetune benchmark: our engine vs llama-index-finetuning's, same data, same machine, one table.

Trains all-MiniLM-L6-v2 on the Lyft questions (``train_dataset.json``) and evaluates on the Uber
questions (``val_dataset.json``) with the same two evaluations for every model, each with the
model's saved prompts and max_seq_length 512:

- *truncated*: sentence-transformers' InformationRetrievalEvaluator; a chunk longer than 512
  tokens is cut (70% of the Uber chunks are), as llama-index-finetuning and the tutorial do;
- *served*: this package's ``evaluate_retrieval`` with ``load_embed_model`` (what
  ``get_finetuned_model()`` gives a ``VectorStoreIndex``). Until #12 that read long chunks whole
  (``long_texts="window"``); it now truncates them like ``HuggingFaceEmbedding``, so the two
  evaluations differ only in their code paths.

The reference runs as a subprocess in its own environment (``--ref-python``), made with::

    python3 -m venv .bench/ref-venv
    .bench/ref-venv/bin/pip install torch==2.13.0   # the CPU build first
    .bench/ref-venv/bin/pip install llama-index-finetuning 'mistralai<2' datasets accelerate

Usage (heavy: serialise with the other CPU jobs)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_finetune.py --which both

``--which ours|ref|base`` runs one part; ``--ours '{"epochs": 2}'`` passes engine keywords.
The reference's llama-index engine needs a val set to run under sentence-transformers >= 3; it
gets a two-query one so that its in-training evaluation costs (almost) nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "seed10k"
REF_PYTHON = ROOT / ".bench" / "ref-venv" / "bin" / "python"


def _minilm() -> str:
    sys.path.insert(0, str(ROOT))
    from llama_index_finetune_embed.embeddings import packaged_minilm_path

    return str(packaged_minilm_path())


def evaluate(model_dir: str, data: Path) -> dict[str, float]:
    """MRR@10, hit@5, NDCG@10 of a saved model on the val set, truncated and served."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.embeddings import prompt_pair, saved_prompts

    val = EmbeddingQAFinetuneDataset.from_json(data / "val_dataset.json")
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 512
    query, doc = prompt_pair(saved_prompts(model_dir))
    evaluator = InformationRetrievalEvaluator(
        val.queries, val.corpus, {q: set(d) for q, d in val.relevant_docs.items()},
        name="val", batch_size=32, query_prompt=query or None, corpus_prompt=doc or None,
        write_csv=False,
    )
    scores = evaluator(model)
    del model
    from llama_index_finetune_embed import evaluate_retrieval
    from llama_index_finetune_embed.embeddings import load_embed_model

    served = evaluate_retrieval(
        val, load_embed_model(model_dir, max_length=512), top_k=10, show_progress=False
    ).metrics
    return {
        "mrr@10": scores["val_cosine_mrr@10"],
        "hit@5": scores["val_cosine_accuracy@5"],
        "ndcg@10": scores["val_cosine_ndcg@10"],
        "served mrr@10": served["mrr@10"],
        "served hit@5": served["accuracy@5"],
        "served ndcg@10": served["ndcg@10"],
    }


def run_ours(data: Path, out: Path, kwargs: dict) -> float:
    """Train with our engine (default recipe unless ``kwargs``); return finetune() seconds."""
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    train = EmbeddingQAFinetuneDataset.from_json(data / "train_dataset.json")
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=_minilm(), model_output_path=out, **kwargs
    )
    start = time.perf_counter()  # the whole finetune() call, as for the reference
    engine.finetune()
    return time.perf_counter() - start


def run_ref(data: Path, out: Path, ref_python: Path) -> float:
    """Train with llama-index-finetuning's engine in its own venv; return training seconds."""
    if not ref_python.is_file():
        raise SystemExit(f"reference environment missing: {ref_python} (see this file's docstring)")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(  # in ``out``: the reference writes checkpoints/ into its cwd
        [str(ref_python), str(Path(__file__).resolve()), "--ref-worker", str(data),
         str(out.resolve()), _minilm()],
        capture_output=True, text=True, cwd=out,
    )
    if proc.returncode != 0:
        raise SystemExit(f"reference run failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def ref_worker(data: str, out: str, model_path: str) -> None:
    """Runs in the reference venv: llama-index-finetuning 0.4.2's defaults (batch 10, 2 epochs)."""
    from llama_index.finetuning import (
        EmbeddingQAFinetuneDataset,
        SentenceTransformersFinetuneEngine,
    )

    train = EmbeddingQAFinetuneDataset.from_json(str(Path(data) / "train_dataset.json"))
    qids = list(train.queries)[:2]
    docs = {d for q in qids for d in train.relevant_docs[q]}
    tiny_val = EmbeddingQAFinetuneDataset(
        queries={q: train.queries[q] for q in qids},
        corpus={d: train.corpus[d] for d in docs},
        relevant_docs={q: train.relevant_docs[q] for q in qids},
    )
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=model_path, model_output_path=out, val_dataset=tiny_val,
        show_progress_bar=False, device="cpu",
    )
    start = time.perf_counter()
    engine.finetune()
    print(time.perf_counter() - start)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--ref-worker":
        ref_worker(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=["both", "ours", "ref", "base", "all"], default="both")
    parser.add_argument("--ours", default="{}", help="JSON keyword arguments for our engine")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--ref-python", type=Path, default=REF_PYTHON)
    parser.add_argument("--out", type=Path, default=None, help="where models go (default: temp)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    rows = []
    if args.which in {"base", "all"}:
        rows.append(("base all-MiniLM-L6-v2", evaluate(_minilm(), args.data), None))
    if args.which in {"ref", "both", "all"}:
        seconds = run_ref(args.data, out / "ref", args.ref_python)
        ref_metrics = evaluate(str(out / "ref"), args.data)
        rows.append(("llama-index-finetuning 0.4.2", ref_metrics, seconds))
    if args.which in {"ours", "both", "all"}:
        seconds = run_ours(args.data, out / "ours", json.loads(args.ours))
        rows.append((f"ours {args.ours}", evaluate(str(out / "ours"), args.data), seconds))
    keys = ["mrr@10", "hit@5", "ndcg@10", "served mrr@10", "served hit@5", "served ndcg@10"]
    print("| model | truncated: MRR@10 | hit@5 | NDCG@10 | served: MRR@10 | hit@5 | NDCG@10 "
          "| train s |")
    print("| --- " * 8 + "|")
    for name, m, seconds in rows:
        train_s = f"{seconds:.1f}" if seconds is not None else "-"
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + f" | {train_s} |")
    timed = {name: s for name, _, s in rows if s is not None}
    if len(timed) == 2:
        ref_s, ours_s = (timed[k] for k in sorted(timed, key=lambda k: not k.startswith("llama")))
        print(f"training time ratio (ours / reference): {ours_s / ref_s:.2f}")


if __name__ == "__main__":
    main()
