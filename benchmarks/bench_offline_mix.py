"""Which offline training pairs help? Train on pairs made from the Lyft chunks, test on Uber.

Training pairs come only from the chunk texts of ../shared/data/seed10k/train_dataset.json (its
GPT-3.5 questions are never used); the score is all-MiniLM-L6-v2's MRR@10 / hit@5 on the Uber
questions of val_dataset.json (written by GPT-3.5, by nobody here), max_seq_length 512.

Usage (PY=.venv/bin/python; each config is a few minutes of CPU: run under the shared lock):
    flock /tmp/heavy.lock $PY benchmarks/bench_offline_mix.py base
    flock /tmp/heavy.lock $PY benchmarks/bench_offline_mix.py ict1 ict2 crop1 ict1+crop1
    flock /tmp/heavy.lock $PY benchmarks/bench_offline_mix.py --make-llm   # SmolLM pairs
    flock /tmp/heavy.lock $PY benchmarks/bench_offline_mix.py ict1+llm

A config is ``+``-joined parts: ``ict<k>`` (k sentences per chunk, the library's default
remove_prob), ``ictkeep<k>`` / ``ictdrop<k>`` (ICT with the sentence kept in / removed 90% of the
time from the positive), ``crop<k>`` (k crops per chunk), ``llm`` (SmolLM questions written by
``--make-llm``). Rows written before the default changed to "keep" name ictdrop runs "ict".
Each result is printed and appended to runs/bench/offline_mix.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset  # noqa: E402
from llama_index_finetune_embed.embeddings import LOCAL_MINILM, resolve_model_id  # noqa: E402
from llama_index_finetune_embed.generate.pseudo import generate_pseudo_queries  # noqa: E402

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed10k"
OUT = Path("runs/bench")
LLM_PAIRS = OUT / "smollm_lyft.json"


def lyft_nodes():
    """The Lyft chunks as TextNodes (ids = the dataset's chunk ids); the questions are dropped."""
    from llama_index.core.schema import TextNode

    train = EmbeddingQAFinetuneDataset.from_json(SEED / "train_dataset.json")
    return [TextNode(id_=cid, text=text) for cid, text in train.corpus.items()]


def build_pairs(config: str, nodes) -> EmbeddingQAFinetuneDataset:
    parts = []
    for part in config.split("+"):
        if part == "llm":
            parts.append(EmbeddingQAFinetuneDataset.from_json(LLM_PAIRS))
        elif part.startswith("ictkeep"):
            k = int(part.removeprefix("ictkeep"))
            parts.append(generate_pseudo_queries(nodes, method="ict", per_chunk=k, remove_prob=0))
        elif part.startswith("ictdrop"):
            k = int(part.removeprefix("ictdrop"))
            parts.append(generate_pseudo_queries(nodes, method="ict", per_chunk=k, remove_prob=0.9))
        elif part.startswith("ict"):
            parts.append(generate_pseudo_queries(nodes, method="ict", per_chunk=int(part[3:])))
        elif part.startswith("crop"):
            parts.append(generate_pseudo_queries(nodes, method="crop", per_chunk=int(part[4:])))
        else:
            raise SystemExit(f"unknown config part {part!r}")
    return parts[0].merge(*parts[1:]) if len(parts) > 1 else parts[0]


def train(ds: EmbeddingQAFinetuneDataset, out_dir: Path, epochs: float):
    """SentenceTransformerTrainer: MNRL, no-duplicates batches of 16, lr 3e-5, bf16, seq 512."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    model = SentenceTransformer(resolve_model_id(LOCAL_MINILM), device="cpu")
    model.max_seq_length = 512
    rows = [(q, ds.corpus[d]) for _, q, d in ds.pairs()]
    data = Dataset.from_dict({"anchor": [q for q, _ in rows], "positive": [p for _, p in rows]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        learning_rate=3e-5,
        warmup_steps=0.1,  # a float < 1 is a ratio of the total steps in transformers 5
        bf16=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=1000,
        report_to=[],
        seed=0,
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    return model


def evaluate(model) -> dict[str, float]:
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    val = EmbeddingQAFinetuneDataset.from_json(SEED / "val_dataset.json")
    model.max_seq_length = 512
    model.float()  # score every model in float32, like the base model
    evaluator = InformationRetrievalEvaluator(
        val.queries,
        val.corpus,
        {q: set(d) for q, d in val.relevant_docs.items()},
        mrr_at_k=[10],
        accuracy_at_k=[5],
        ndcg_at_k=[10],
        precision_recall_at_k=[5],
        map_at_k=[10],
        name="uber",
        write_csv=False,
    )
    scores = evaluator(model)
    key = next(k for k in scores if k.endswith("mrr@10"))
    hit = next(k for k in scores if k.endswith("accuracy@5"))
    return {"mrr@10": round(scores[key], 4), "hit@5": round(scores[hit], 4)}


def run_config(config: str, epochs: float) -> dict:
    start = time.perf_counter()
    if config == "base":
        from sentence_transformers import SentenceTransformer

        model, n_pairs = SentenceTransformer(resolve_model_id(LOCAL_MINILM), device="cpu"), 0
    else:
        ds = build_pairs(config, lyft_nodes())
        n_pairs = len(ds)
        model = train(ds, OUT / "tmp-model", epochs)
    trained = time.perf_counter()
    metrics = evaluate(model)
    return {
        "config": config,
        "epochs": epochs,
        "pairs": n_pairs,
        **metrics,
        "train_s": round(trained - start, 1),
        "eval_s": round(time.perf_counter() - trained, 1),
    }


def make_llm_pairs(limit: int | None, batch_size: int) -> None:
    """Write SmolLM questions for the Lyft chunks (offline prompt + filters) to LLM_PAIRS."""
    from llama_index_finetune_embed.generate.offline import generate_offline_pairs

    nodes = lyft_nodes()[:limit] if limit else lyft_nodes()
    start = time.perf_counter()
    from llama_index_finetune_embed import LocalLLM

    ds = generate_offline_pairs(
        nodes, llm=LocalLLM(batch_size=batch_size), pseudo=(), cache_path=OUT / "smollm.jsonl"
    )
    LLM_PAIRS.parent.mkdir(parents=True, exist_ok=True)
    ds.save_json(LLM_PAIRS)
    took = time.perf_counter() - start
    print(f"SmolLM: {len(ds)} usable questions from {len(nodes)} chunks in {took:.0f} s")
    for q in list(ds.queries.values())[:15]:
        print("  ", q)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="e.g. base ict1 ict2 crop1 ict1+crop1 ict1+llm")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--make-llm", action="store_true", help="write SmolLM pairs first")
    parser.add_argument("--llm-limit", type=int, default=None, help="only the first N chunks")
    parser.add_argument("--llm-batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    if not SEED.is_dir():
        print(f"needs {SEED}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    if args.make_llm:
        make_llm_pairs(args.llm_limit, args.llm_batch_size)
    for config in args.configs:
        result = run_config(config, args.epochs)
        print(json.dumps(result), flush=True)
        with open(OUT / "offline_mix.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
