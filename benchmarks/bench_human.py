"""Human-query benchmark: does finetuning help the questions people write, not only generated ones?

Scores embed models on the human-query sets in ``../shared/data/human/`` (BEIR layout: SciFact
train claims over the SciFact corpus; SQuAD questions over 24 Wikipedia articles). Each set's
relevant documents are split in two halves at random (``--split-seed``); a query belongs to the
half that holds all of its relevant documents. Every model is scored on the queries of half B
against the *whole* corpus (NDCG@10 / MRR@10 / hit@10 x100, paired-bootstrap 95% interval of the
difference to the status-quo base). Rows:

- ``base``: what a LlamaIndex user has today: ``HuggingFaceEmbedding(model_name=<base>)`` as
  shipped (its configured max length, long texts truncated). Every delta is against this row.
- ``base + windows``: the same model in ``build_window_index`` (long chunks read as windows,
  each chunk scored by its best window); rows ``... + windows`` also print their difference to
  this row (``vs base+w``).
- ``base mean of windows`` / ``base at 512`` (``--base-variants``): one vector per chunk, the
  mean of its windows; truncation at 512 tokens.
- ``(a) tutorial``: the engine trained on the tutorial's 668 GPT-3.5 Lyft questions
  (``../shared/data/seed10k/train_dataset.json``), served as ``get_finetuned_model()`` serves
  it, and ``+ windows``. Scored on every set, the tutorial's Uber val too (``uber``: 790
  GPT-3.5 questions over 395 chunks of Uber's 10-K, 70% of them longer than 512 tokens).
- ``(b) offline job``: the main job's offline training stage on the set's own corpus, no labels:
  inverse-cloze pseudo-queries (``pipeline.training_pairs``, the ``--offline-train pseudo``
  default, at most ``max_train_chunks`` = 1000 documents) over ``--offline-chunks`` sampled
  documents, then the same recipe.
- ``(c) human half``: trained on half A's human (query, document) pairs: the ceiling that better
  generated questions could reach.

Recipes are engine keywords (``--recipe NAME='{"learning_rate": 2e-5}'``; ``default`` = the
engine's defaults), each trained with every ``--seeds`` seed. One key is the bench's own:
``"train_on": "best_window"`` replaces each training pair's chunk by its window that the base
model scores highest for the question (windows as ``build_window_index`` cuts them).
Usage (heavy: one at a time)::

    .venv/bin/python benchmarks/bench_human.py --quick --bf16     # rows a, b, c; 2 seeds (bf16 CPU)
    .venv/bin/python benchmarks/bench_human.py --bf16             # the full sets (longer)

``--quick`` scores 300 queries per set over their relevant documents plus random others (2,000
SciFact abstracts in all; SQuAD's 1,023 paragraphs whole) and trains (b) on 400 documents.
Measured on 2 cores: ``--quick --bf16`` (rows a, b, c, seeds 0 and 1) 27 min (1,628 s), about
650 s of training and 175 s of scoring per seed. The full mode was not timed end to end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
HUMAN = SHARED / "human"
# uber (None): the tutorial's val set of generated questions, scored only
SETS = {"scifact": "scifact_train", "squad": "squad_even", "squad_long": "squad_long_even",
        "uber": None}  # fmt: skip
METRICS = ("ndcg@10", "mrr@10", "accuracy@10")


# -- data ------------------------------------------------------------------------------------


def load_beir(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """(corpus id -> "title\\ntext", query id -> text, query id -> relevant corpus ids)."""
    corpus, queries, qrels = {}, {}, {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            title, text = row.get("title") or "", row.get("text") or ""
            corpus[str(row["_id"])] = f"{title}\n{text}" if title else text
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    with open(folder / "qrels" / "train.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if float(row["score"]) > 0 and row["corpus-id"] in corpus:
                qrels.setdefault(row["query-id"], []).append(row["corpus-id"])
    return corpus, queries, {q: d for q, d in qrels.items() if q in queries}


def split_by_document(
    qrels: dict[str, list[str]], seed: int
) -> tuple[list[str], list[str]]:
    """(half A query ids, half B query ids): no relevant document is on both sides."""
    docs = sorted({d for ids in qrels.values() for d in ids})
    random.Random(seed).shuffle(docs)
    half_a = set(docs[: len(docs) // 2])
    a = [q for q, ids in qrels.items() if all(d in half_a for d in ids)]
    b = [q for q, ids in qrels.items() if not any(d in half_a for d in ids)]
    return sorted(a), sorted(b)


class HumanSet:
    """One human-query set: its eval dataset (half B), training pairs (half A) and corpus."""

    def __init__(self, name: str, quick: bool, split_seed: int) -> None:
        from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

        self.name = name
        if SETS[name] is None:  # the tutorial's Uber val: no human half to train on
            val = SHARED / "seed10k" / "val_dataset.json"
            self.eval = EmbeddingQAFinetuneDataset.from_json(val)
            self.corpus, self.human_train = self.eval.corpus, None
            return
        corpus, queries, qrels = load_beir(HUMAN / SETS[name])
        train_q, eval_q = split_by_document(qrels, split_seed)
        self.human_train = EmbeddingQAFinetuneDataset(
            queries={q: queries[q] for q in train_q},
            corpus={d: corpus[d] for q in train_q for d in qrels[q]},
            relevant_docs={q: qrels[q] for q in train_q},
        )
        rng = random.Random(split_seed)
        if quick:
            eval_q = sorted(rng.sample(eval_q, min(300, len(eval_q))))
            needed = {d for q in eval_q for d in qrels[q]}
            others = sorted(set(corpus) - needed)
            keep = needed | set(rng.sample(others, max(0, min(len(others), 2000 - len(needed)))))
            corpus = {k: v for k, v in corpus.items() if k in keep}
        self.corpus = corpus
        self.eval = EmbeddingQAFinetuneDataset(
            queries={q: queries[q] for q in eval_q},
            corpus=corpus,
            relevant_docs={q: qrels[q] for q in eval_q},
        )

    def offline_train(self, n_docs: int, seed: int, **options: Any) -> Any:
        """The main job's offline training pairs (ICT, no LLM) over ``n_docs`` sampled docs,
        at most its ``max_train_chunks`` of them; with ``options`` (``--offline-options``),
        ``generate_offline_pairs(**options)`` over all ``n_docs`` instead (no cap)."""
        from llama_index.core.schema import TextNode

        from llama_index_finetune_embed.generate.offline import generate_offline_pairs
        from llama_index_finetune_embed.pipeline import RunConfig, training_pairs

        ids = sorted(self.corpus)
        ids = sorted(random.Random(seed).sample(ids, min(n_docs, len(ids))))
        nodes = [TextNode(id_=i, text=self.corpus[i]) for i in ids]
        if options:
            return generate_offline_pairs(nodes, llm=None, seed=seed, **options)
        with tempfile.TemporaryDirectory() as tmp:
            config = RunConfig(out=tmp, llm="none", seed=seed)
            return training_pairs(nodes, "none", None, config, Path(tmp) / "cache.jsonl")


# -- models ----------------------------------------------------------------------------------


def status_quo_base(base_path: str) -> Any:
    """The base exactly as LlamaIndex loads it: plain HuggingFaceEmbedding, truncating."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=base_path, device="cpu")


def train(dataset: Any, base: str, out: Path, recipe: dict[str, Any], seed: int) -> Any:
    """Train with the engine into ``out``; return (seconds, engine metrics)."""
    from llama_index_finetune_embed import SentenceTransformersFinetuneEngine

    start = time.perf_counter()
    engine = SentenceTransformersFinetuneEngine(
        dataset, model_id=base, model_output_path=out, seed=seed, **recipe
    )
    engine.finetune()
    return time.perf_counter() - start, engine.metrics


def fast(model: Any, bf16: bool) -> Any:
    """The embed model with bf16 weights (about 2-4x faster on CPUs with bf16 matmuls)."""
    if bf16:
        from llama_index_finetune_embed.embeddings import set_precision

        set_precision(model, "bf16")
    return model


def variants(model_dir: Path, base_path: str, args: argparse.Namespace) -> Any:
    """(label suffix, model dir, served embed model, index) for a trained model and its variants:
    served as ``get_finetuned_model()`` serves it, at other lengths (``--serve-lengths``) and
    averaged with the base (``--mix``), each plain and in ``build_window_index``."""
    from llama_index_finetune_embed import load_finetuned_model

    served = [("", model_dir, {})]
    served += [(f" at {n}", model_dir, {"max_length": n}) for n in args.serve_lengths]
    for weight in args.mix:
        mixed = model_dir / f"mix{weight}"
        mix_with_base(model_dir, base_path, weight, mixed)
        served.append((f" base_weight={weight}", mixed, {}))
    for suffix, folder, kwargs in served:
        model = fast(load_finetuned_model(folder, **kwargs), args.bf16)
        yield suffix, folder, model, "plain"
        yield f"{suffix} + windows", folder, model, "windows"


def best_window_pairs(dataset: Any, base_path: str, bf16: bool) -> Any:
    """``dataset`` with each chunk replaced, per question, by its window the base scores highest
    (windows as ``build_window_index`` cuts them for the base)."""
    import numpy as np

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.embeddings import embed_queries, load_embed_model
    from llama_index_finetune_embed.evaluate.fast import corpus_windows

    base = fast(load_embed_model(base_path), bf16)
    texts, starts = corpus_windows(dataset, base)
    vectors = np.asarray(base.get_text_embedding_batch(texts), dtype=np.float64)
    ends = np.append(starts[1:], len(texts))
    span = {cid: (a, b) for cid, a, b in zip(dataset.corpus, starts, ends, strict=True)}
    qids = list(dataset.queries)
    queries = np.asarray(embed_queries(base, [dataset.queries[q] for q in qids]), np.float64)
    corpus, relevant = {}, {}
    for qid, qvec in zip(qids, queries, strict=True):
        cid = dataset.relevant_docs[qid][0]
        a, b = span[cid]
        best = a + int(np.argmax(vectors[a:b] @ qvec))
        wid = cid if b - a == 1 else f"{cid}#w{best - a}"
        corpus[wid], relevant[qid] = texts[best], [wid]
    return EmbeddingQAFinetuneDataset(queries=dict(dataset.queries), corpus=corpus,
                                      relevant_docs=relevant)  # fmt: skip


def mix_with_base(model_dir: Path, base_path: str, weight: float, out: Path) -> None:
    """Save ``weight`` x base + ``1 - weight`` x the finetuned model into ``out`` (WiSE-FT)."""
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.finetune.model import average_with_base

    model = SentenceTransformer(str(model_dir), device="cpu")
    base = SentenceTransformer(base_path, device="cpu")
    average_with_base(model, base.state_dict(), weight)
    model.save_pretrained(str(out), create_model_card=False)


# -- scoring ---------------------------------------------------------------------------------


class Scorer:
    """Scores models on one set against the base; keeps each row's numbers for the table."""

    def __init__(self, hset: HumanSet, base: Any) -> None:
        from llama_index_finetune_embed import evaluate_retrieval

        self.hset = hset
        self.base = evaluate_retrieval(hset.eval, base, top_k=10, name="base")
        self.rows: list[dict[str, Any]] = [self._row(self.base, None)]
        self.base_windows: Any = None  # the base in build_window_index, once scored

    def add(self, label: str, model: Any, index: str = "plain", **extra: Any) -> dict[str, Any]:
        from llama_index_finetune_embed import ComparisonTable, evaluate_retrieval

        start = time.perf_counter()
        result = evaluate_retrieval(self.hset.eval, model, top_k=10, name=label, index=index)
        table = ComparisonTable.from_results([self.base, result])
        row = self._row(result, table, eval_seconds=time.perf_counter() - start, **extra)
        if index == "windows" and self.base_windows is None:
            self.base_windows = result
        elif index == "windows":
            d = ComparisonTable.from_results([self.base_windows, result]).paired_diff(
                label, "ndcg@10")
            row["vs_base_windows"] = (100 * d.delta, 100 * d.ci[0], 100 * d.ci[1])
        self.rows.append(row)
        print(_fmt_row(self.hset.name, row), flush=True)
        return row

    def _row(self, result: Any, table: Any, **extra: Any) -> dict[str, Any]:
        row = {"set": self.hset.name, "model": result.name, **extra}
        for m in METRICS:
            row[m] = 100 * result.metrics[m]
            if table is not None:
                d = table.paired_diff(result.name, m)
                row[f"d_{m}"] = (100 * d.delta, 100 * d.ci[0], 100 * d.ci[1])
        return row


def _fmt_row(name: str, row: dict[str, Any]) -> str:
    parts = [f"{name:8s} {row['model']:34s}"]
    for m in METRICS:
        cell = f"{row[m]:5.1f}"
        if f"d_{m}" in row:
            d, lo, hi = row[f"d_{m}"]
            cell += f" ({d:+.1f} [{lo:+.1f},{hi:+.1f}])"
        parts.append(f"{m} {cell}")
    if "guard" in row:
        parts.append(f"guard {row['guard']} (trained: canary {row['canary']:+.1f})")
    if "vs_base_windows" in row:
        parts.append("vs base+w {:+.1f} [{:+.1f},{:+.1f}]".format(*row["vs_base_windows"]))
    if "seconds" in row:
        parts.append(f"trained {row['seconds']:.0f} s, scored {row['eval_seconds']:.0f} s")
    return "  ".join(parts)


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table: model x set, NDCG@10 with its paired intervals (vs the status quo and, for
    window rows, vs the base in build_window_index), MRR@10, hit@10."""
    lines = [
        "| model | set | NDCG@10 | Δ vs status quo [95%] | Δ vs base + windows [95%] | MRR@10 "
        "| hit@10 |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        cells = ["-" if key not in r else "{:+.1f} [{:+.1f}, {:+.1f}]".format(*r[key])
                 for key in ("d_ndcg@10", "vs_base_windows")]  # fmt: skip
        lines.append(
            f"| {r['model']} | {r['set']} | {r['ndcg@10']:.1f} | {cells[0]} | {cells[1]} | "
            f"{r['mrr@10']:.1f} | {r['accuracy@10']:.1f} |"
        )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="300 queries a set, smaller corpora")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--rows", default="abc", help="which of (a), (b), (c) to train: e.g. 'a'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--recipe", action="append", default=[],
                   help='NAME=JSON engine keywords; default: default={}')
    p.add_argument("--base-variants", action="store_true",
                   help="also score the base as one mean-of-windows vector and at 512 tokens")
    p.add_argument("--mix", nargs="*", type=float, default=[],
                   help="also score each model averaged with the base at these base weights")
    p.add_argument("--serve-lengths", nargs="*", type=int, default=[],
                   help="also score each model served at these max lengths")
    p.add_argument("--bf16", action="store_true",
                   help="embed in bf16, every row alike, base included (faster only where the "
                   "CPU has native bf16, AVX512-BF16/AMX; ~6x slower on an AVX2-only CPU)")
    p.add_argument("--offline-chunks", type=int, default=None,
                   help="documents the (b) rows train on (default 1500, quick 400)")
    p.add_argument("--offline-options", type=json.loads, default={},
                   help='JSON keywords for generate_offline_pairs, e.g. \'{"remove_prob": 0.9}\'')
    p.add_argument("--out", type=Path, default=ROOT / ".bench" / "human")
    return p.parse_args(argv)


def recipes(specs: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for spec in specs or ["default={}"]:
        name, _, js = spec.partition("=")
        out[name] = json.loads(js or "{}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (HUMAN / "README.md").is_file():
        sys.exit(f"needs the human-query sets in {HUMAN} (a checkout with ../shared beside it)")
    from llama_index_finetune_embed.embeddings import load_embed_model, packaged_minilm_path

    base_path = str(packaged_minilm_path())
    started = time.perf_counter()
    sets = {n: HumanSet(n, args.quick, args.split_seed) for n in args.sets}
    for n, s in sets.items():
        human = len(s.human_train.queries) if s.human_train else 0
        print(f"{n}: {len(s.eval.queries)} eval queries over {len(s.corpus)} docs; "
              f"{human} human training queries", flush=True)
    scorers = {n: Scorer(s, fast(status_quo_base(base_path), args.bf16)) for n, s in sets.items()}
    for sc in scorers.values():
        print(_fmt_row(sc.hset.name, sc.rows[0]), flush=True)
        sc.add("base + windows", fast(status_quo_base(base_path), args.bf16), index="windows")
        if args.base_variants:
            windows = load_embed_model(base_path, long_texts="window")
            sc.add("base mean of windows", fast(windows, args.bf16))
            sc.add("base at 512", fast(load_embed_model(base_path, max_length=512), args.bf16))
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    tutorial = EmbeddingQAFinetuneDataset.from_json(SHARED / "seed10k" / "train_dataset.json")
    n_off = args.offline_chunks or (400 if args.quick else 1500)
    args.out.mkdir(parents=True, exist_ok=True)
    for rname, recipe in recipes(args.recipe).items():
        recipe = dict(recipe)
        train_on = recipe.pop("train_on", "chunk")
        for seed in args.seeds:
            tag = f"{rname} s{seed}"
            jobs = []
            if "a" in args.rows:
                jobs.append(("(a) tutorial", tutorial, list(scorers.values())))
            for name, sc in scorers.items():
                if "b" in args.rows and sets[name].human_train is not None:
                    pairs = sets[name].offline_train(n_off, seed, **args.offline_options)
                    jobs.append(("(b) offline job", pairs, [sc]))
                if "c" in args.rows and sets[name].human_train is not None:
                    jobs.append(("(c) human half", sets[name].human_train, [sc]))
            for kind, data, targets in jobs:
                if train_on == "best_window":
                    data = best_window_pairs(data, base_path, args.bf16)
                with tempfile.TemporaryDirectory(dir=args.out) as tmp:
                    secs, metrics = train(data, base_path, Path(tmp), recipe, seed)
                    guard = metrics.get("guard") or {}
                    for suffix, _, model, index in variants(Path(tmp), base_path, args):
                        extra: dict[str, Any] = {"seconds": secs}
                        if guard and not suffix:
                            extra["guard"] = guard["decision"]
                            extra["canary"] = guard["tried"][0]["checks"][0]["delta"]
                        for sc in targets:
                            sc.add(f"{kind} {tag}{suffix}", model, index=index, **extra)
    rows = [r for sc in scorers.values() for r in sc.rows]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"human-{stamp}.json").write_text(json.dumps(
        {"argv": sys.argv[1:], "rows": rows}, indent=1), encoding="utf-8")
    print()
    print(markdown(rows))
    print(f"\n{time.perf_counter() - started:.0f} s; rows in {args.out}/human-{stamp}.json")


if __name__ == "__main__":
    main()
