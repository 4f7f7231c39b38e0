"""Position benchmark (#27): do position-balanced training pairs train a better model?

Generated questions tend to ask about the start of a chunk; people ask about any part of it. This
bench trains on human questions whose position in their chunk is known and compares three
training sets of the SAME size N (positive always the whole long chunk):

- ``(a) first``: the half-A questions of ``squad_long_even`` whose SQuAD paragraph starts in the
  first passage of its chunk (all of them: this arm sets N and each chunk's count k_c);
- ``(b) spread``: k_c questions per chunk again (same chunks, same counts), drawn round-robin
  over the chunk's passages (each round visits the passages in a random order), so passages are
  evenly represented;
- ``(c) ict``: today's offline generator (``generate_offline_pairs``, inverse-cloze: a random
  sentence of the chunk is the query, the chunk its positive) over half A's chunks, drawn with
  enough pseudo-queries per chunk and subsampled to k_c per chunk (one per chunk would give only
  ~93 pairs);
- ``(n) natural`` (not run unless asked, ``--arms ... natural``): k_c questions per chunk drawn
  at random from all of the chunk's human questions (people's own position mix).

Position: a question's ``squad_even`` paragraph is found in its ``squad_long_even`` chunk; its
start (in words) over the chunk's words is the relative position, and the chunk is cut into
P = ceil(words / 200) passages of equal word count (passage index = where the paragraph starts).
An ICT query's position is where its sentence starts. The bench prints, per arm, N, the share of
pairs from the first passage and the mean relative position.

Each arm is trained with the engine's default recipe (``bench_human.train``) per ``--seeds``
seed (the spread/ict/natural draws use that seed too) and served plain and ``+ windows``
(``bench_human.variants``), scored with ``bench_human.Scorer`` (NDCG@10 etc. x100, paired-
bootstrap interval of the difference to the status-quo base; window rows also vs
``base + windows``) on:

- ``squad_long``: half B of ``squad_long_even`` (``HumanSet('squad_long', quick=True)``: 300
  questions, all 186 chunks);
- ``squad``: the SAME 300 half-B questions against the 1,023 ``squad_even`` paragraphs. Not
  ``HumanSet('squad')``: that splits by paragraph, and about half of its half-B questions are
  training questions of half A here (the overlap is printed);
- ``scifact``: ``HumanSet('scifact', quick=True)``;
- ``uber``: the tutorial's Uber val (generated questions).

Usage (heavy: one at a time, embeddings in bf16 as ``bench_human.py --quick --bf16``)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_positions.py --seeds 0 1
    # a part: one seed, one arm, one set
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_positions.py --seeds 0 \\
        --arms spread --sets squad_long

Rows print as they come; a markdown table at the end; the rows and the arms' statistics are
written to ``.bench/positions-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_human as bh  # noqa: E402  (sets HF_HUB_OFFLINE etc. and the package's path)

ARMS = {"first": "(a) first", "spread": "(b) spread", "ict": "(c) ict", "natural": "(n) natural"}
SETS = ("squad_long", "squad", "scifact", "uber")
PASSAGE_WORDS = 200


# -- positions -------------------------------------------------------------------------------


def _raw_texts(folder: str) -> dict[str, str]:
    with open(bh.HUMAN / folder / "corpus.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {str(r["_id"]): r.get("text") or "" for r in rows}


def _where(chunk: str, words_before: int) -> tuple[float, int]:
    """(relative position, passage index) of a span starting ``words_before`` words in."""
    total = len(chunk.split())
    n_passages = max(1, math.ceil(total / PASSAGE_WORDS))
    passage = min(n_passages - 1, int(words_before / (total / n_passages)))
    return words_before / total, passage


class Positions:
    """Half A of ``squad_long_even``: its chunks, and each human question's position."""

    def __init__(self, split_seed: int) -> None:
        corpus, self.queries, qrels = bh.load_beir(bh.HUMAN / "squad_long_even")
        _, _, para_qrels = bh.load_beir(bh.HUMAN / "squad_even")
        chunk_text, para_text = _raw_texts("squad_long_even"), _raw_texts("squad_even")
        self.qrels, self.para_qrels = qrels, para_qrels
        self.train_q, self.eval_q = bh.split_by_document(qrels, split_seed)
        self.chunks = sorted({qrels[q][0] for q in self.train_q})
        self.corpus = {c: corpus[c] for c in self.chunks}  # "title\ntext", as HumanSet has it
        self.chunk_body = {c: chunk_text[c] for c in self.chunks}
        self.where: dict[str, tuple[float, int]] = {}  # query -> (relative position, passage)
        self.by_chunk: dict[str, list[str]] = defaultdict(list)
        missing = 0
        for q in self.train_q:
            (cid,), (pid,) = qrels[q], para_qrels[q]
            body = chunk_text[cid]
            offset = body.find(para_text[pid])
            if offset < 0:
                missing += 1
                continue
            self.where[q] = _where(body, len(body[:offset].split()))
            self.by_chunk[cid].append(q)
        if missing:
            print(f"positions: {missing} questions' paragraphs not found in their chunk (dropped)")
        # k_c: first-passage questions per chunk; every arm draws this many from chunk c
        self.k = {c: sum(self.where[q][1] == 0 for q in qs) for c, qs in self.by_chunk.items()}

    def ict_where(self, cid: str, query: str) -> tuple[float, int] | None:
        body = " ".join(self.chunk_body[cid].split())
        offset = body.find(" ".join(query.split()))
        return None if offset < 0 else _where(body, len(body[:offset].split()))


# -- the arms --------------------------------------------------------------------------------


def arm_pairs(pos: Positions, arm: str, seed: int) -> list[tuple[str, str, str, tuple | None]]:
    """(query id, query text, chunk id, (position, passage) or None) of one arm, k_c per chunk."""
    rng = random.Random(f"{arm}:{seed}")
    out = []
    if arm == "ict":
        return _ict_pairs(pos, seed)
    for cid in sorted(pos.by_chunk):
        qs, k = pos.by_chunk[cid], pos.k[cid]
        if arm == "first":
            picked = [q for q in qs if pos.where[q][1] == 0]
        elif arm == "natural":
            picked = rng.sample(qs, k)
        elif arm == "spread":
            by_passage: dict[int, list[str]] = defaultdict(list)
            for q in qs:
                by_passage[pos.where[q][1]].append(q)
            for bucket in by_passage.values():
                rng.shuffle(bucket)
            picked = []
            while len(picked) < k:
                order = [p for p in by_passage if by_passage[p]]
                rng.shuffle(order)
                for p in order[: k - len(picked)]:
                    picked.append(by_passage[p].pop())
        else:
            raise ValueError(arm)
        out += [(q, pos.queries[q], cid, pos.where[q]) for q in sorted(picked)]
    return out


def _ict_pairs(pos: Positions, seed: int) -> list[tuple[str, str, str, tuple | None]]:
    """Today's offline generator (ICT, whole chunk as positive) over half A's chunks, enough
    pseudo-queries per chunk drawn to subsample k_c of them."""
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.generate.offline import generate_offline_pairs

    nodes = [TextNode(id_=c, text=pos.corpus[c]) for c in pos.chunks]
    per_chunk = max(pos.k.values())
    ds = generate_offline_pairs(nodes, llm=None, pseudo_per_chunk=per_chunk, seed=seed)
    by_chunk: dict[str, list[str]] = defaultdict(list)
    for qid, docs in ds.relevant_docs.items():
        by_chunk[docs[0]].append(qid)
    rng = random.Random(f"ict:{seed}")
    out, short = [], 0
    for cid in pos.chunks:
        qids = sorted(by_chunk[cid])
        k = pos.k.get(cid, 0)
        short += max(0, k - len(qids))
        for qid in sorted(rng.sample(qids, min(k, len(qids)))):
            out.append((qid, ds.queries[qid], cid, pos.ict_where(cid, ds.queries[qid])))
    if short:
        print(f"ict: {short} pairs short (chunks with fewer usable sentences than k_c)")
    return out


def to_dataset(pos: Positions, pairs: list) -> Any:
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    return EmbeddingQAFinetuneDataset(
        queries={q: text for q, text, _, _ in pairs},
        corpus={c: pos.corpus[c] for c in sorted({c for _, _, c, _ in pairs})},
        relevant_docs={q: [c] for q, _, c, _ in pairs},
    )


def arm_stats(pairs: list) -> dict[str, Any]:
    known = [w for *_, w in pairs if w is not None]
    return {
        "pairs": len(pairs),
        "chunks": len({c for _, _, c, _ in pairs}),
        "located": len(known),
        "first_passage_share": sum(p == 0 for _, p in known) / max(1, len(known)),
        "mean_rel_position": sum(r for r, _ in known) / max(1, len(known)),
    }


# -- the eval sets ---------------------------------------------------------------------------


def eval_sets(names: list[str], pos: Positions, split_seed: int) -> dict[str, Any]:
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    sets = {}
    long = bh.HumanSet("squad_long", quick=True, split_seed=split_seed)
    for name in names:
        if name == "squad_long":
            sets[name] = long
        elif name == "squad":
            paragraphs = bh.HumanSet("squad", quick=True, split_seed=split_seed)
            leaked = len(set(paragraphs.eval.relevant_docs) & set(pos.train_q))
            print(
                f"squad: HumanSet('squad') half B would share {leaked} of its "
                f"{len(paragraphs.eval.queries)} questions with half A's training questions; "
                "scoring squad_long's half-B questions against the paragraphs instead"
            )
            corpus, _, _ = bh.load_beir(bh.HUMAN / "squad_even")
            qids = list(long.eval.queries)
            paragraphs.eval = EmbeddingQAFinetuneDataset(
                queries=dict(long.eval.queries), corpus=corpus,
                relevant_docs={q: pos.para_qrels[q] for q in qids},
            )  # fmt: skip
            paragraphs.corpus = corpus
            sets[name] = paragraphs
        else:
            sets[name] = bh.HumanSet(name, quick=True, split_seed=split_seed)
    return sets


# -- main ------------------------------------------------------------------------------------


def summary(rows: list[dict[str, Any]], sets: list[str]) -> str:
    """Model x set: NDCG@10 delta vs the status quo [95%] (window rows: also vs base + windows)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["set"]): r for r in rows}
    lines = ["| model | " + " | ".join(sets) + " |", "|:--|" + "--:|" * len(sets)]
    for m in models:
        cells = []
        for s in sets:
            r = cell.get((m, s))
            if r is None:
                cells.append("")
            elif "d_ndcg@10" not in r:
                cells.append(f"{r['ndcg@10']:.1f}")
            else:
                text = "{:+.1f} [{:+.1f}, {:+.1f}]".format(*r["d_ndcg@10"])
                if "vs_base_windows" in r:
                    text += " (vs b+w {:+.1f} [{:+.1f}, {:+.1f}])".format(*r["vs_base_windows"])
                cells.append(text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--arms", nargs="+", default=["first", "spread", "ict"], choices=list(ARMS))
    p.add_argument(
        "--plain-sets",
        nargs="*",
        choices=SETS,
        default=None,
        help="sets that score the trained models plain (default: all --sets)",
    )
    p.add_argument(
        "--windows-sets",
        nargs="*",
        choices=SETS,
        default=None,
        help="sets that score the trained models + windows (default: all --sets)",
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument(
        "--no-bf16",
        dest="bf16",
        action="store_false",
        help="embed in fp32 (default bf16, as bench_human --bf16)",
    )
    p.add_argument("--out", type=Path, default=bh.ROOT / ".bench")
    args = p.parse_args(argv)
    args.serve_lengths, args.mix = [], []  # what bench_human.variants reads
    args.plain_sets = args.sets if args.plain_sets is None else args.plain_sets
    args.windows_sets = args.sets if args.windows_sets is None else args.windows_sets
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from llama_index_finetune_embed.embeddings import packaged_minilm_path

    started = time.perf_counter()
    base_path = str(packaged_minilm_path())
    pos = Positions(args.split_seed)
    print(
        f"squad_long half A: {len(pos.train_q)} questions over {len(pos.chunks)} chunks; "
        f"half B: {len(pos.eval_q)} questions",
        flush=True,
    )
    arms: dict[tuple[str, int], list] = {}
    for arm in args.arms:
        for seed in args.seeds:
            arms[arm, seed] = arm_pairs(pos, arm, seed)
    n = min(len(p) for p in arms.values())
    for key, pairs in arms.items():  # equal N: trim the longer arms at random
        if len(pairs) > n:
            keep = set(random.Random(f"trim:{key}").sample(range(len(pairs)), n))
            arms[key] = [p for i, p in enumerate(pairs) if i in keep]
    print(f"N = {n} training pairs per arm (k_c per chunk = its first-passage questions)")
    stats = {f"{arm} s{seed}": arm_stats(p) for (arm, seed), p in arms.items()}
    for key, s in stats.items():
        print(
            f"  {key:12s} {s['pairs']} pairs over {s['chunks']} chunks; first-passage share "
            f"{s['first_passage_share']:.3f}, mean relative position "
            f"{s['mean_rel_position']:.3f} ({s['located']} located)",
            flush=True,
        )

    sets = eval_sets(args.sets, pos, args.split_seed)
    for name, s in sets.items():
        print(
            f"{name}: {len(s.eval.queries)} eval queries over {len(s.eval.corpus)} docs", flush=True
        )
    scorers = {}
    for name, s in sets.items():
        start = time.perf_counter()
        sc = scorers[name] = bh.Scorer(s, bh.fast(bh.status_quo_base(base_path), args.bf16))
        sc.rows[0]["eval_seconds"] = time.perf_counter() - start
        print(
            bh._fmt_row(name, sc.rows[0]) + f"  scored {sc.rows[0]['eval_seconds']:.0f} s",
            flush=True,
        )
        sc.add("base + windows", bh.fast(bh.status_quo_base(base_path), args.bf16), index="windows")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.out / f"positions-{stamp}.json"

    def save() -> list[dict[str, Any]]:
        rows = [r for sc in scorers.values() for r in sc.rows]
        path.write_text(json.dumps({"argv": sys.argv[1:], "n": n, "arms": stats, "rows": rows},
                                   indent=1), encoding="utf-8")  # fmt: skip
        return rows

    work = args.out / "positions"
    work.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for arm in args.arms:
            label = f"{ARMS[arm]} s{seed}"
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                secs, metrics = bh.train(to_dataset(pos, arms[arm, seed]), base_path, Path(tmp),
                                         {}, seed)  # fmt: skip
                guard = metrics.get("guard") or {}
                print(f"{label}: trained {secs:.0f} s; guard {guard.get('decision')}", flush=True)
                for suffix, _, model, index in bh.variants(Path(tmp), base_path, args):
                    extra: dict[str, Any] = {"seconds": secs}
                    if guard and not suffix:
                        extra["guard"] = guard["decision"]
                        extra["canary"] = guard["tried"][0]["checks"][0]["delta"]
                    wanted = args.windows_sets if index == "windows" else args.plain_sets
                    for name, sc in scorers.items():
                        if name in wanted:
                            sc.add(f"{label}{suffix}", model, index=index, **extra)
            save()  # after every model: a cut-short run keeps what it scored
    rows = save()
    print()
    print(bh.markdown(rows))
    print()
    print(summary(rows, list(sets)))
    print(f"\n{time.perf_counter() - started:.0f} s; rows in {path}")


if __name__ == "__main__":
    main()
