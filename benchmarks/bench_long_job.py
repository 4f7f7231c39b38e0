"""The offline main job on long SQuAD articles: its report vs people's questions (issue #27).

Checks the first "done when" bullet of issue #27 on ``squad_long_even``:

1. **docs**: the 24 articles of ``../shared/data/human/squad_long_even`` (each article's chunks
   joined in corpus order with a blank line, as the paragraphs inside a chunk are) written as one
   ``.txt`` per article in ``OUT/docs/`` (a file whose text is unchanged is not rewritten, so a
   rerun resumes the job's stages).
2. **job**: ``run_pipeline(RunConfig(docs=[OUT/docs], out=OUT/run, llm="local", ...))``: the
   offline main job (defaults: 512-token chunks, local LLM, packaged MiniLM base). Every
   RunConfig field is a flag (``--max-chunks 60``, ``--epochs 1``, ...; values parsed as JSON
   when they parse, else strings).
3. **people**: the SQuAD questions (``squad_even``: 1,023 paragraphs, 5,397 questions) whose
   paragraph lies in one of the job's held-out chunks. A paragraph is in a chunk when the chunk
   holds at least ``--min-share`` (0.8) of its characters (located by whitespace-normalised
   offsets in its article; the chunker may cut a paragraph); a question's relevant chunks are the
   held-out chunks that hold its paragraph, most-covering first. Corpus: every held-out chunk as
   ``MetadataMode.EMBED`` renders it, checked against the job's ``val_dataset.json`` corpus.
4. **scores**: ``compare_embed_models(people, {base, finetuned}, index="both", top_k=10)``,
   NDCG@10 x100 per row with its paired 95% interval vs the first row, beside the job's own
   ``report.json`` rows (same metric), the row the report chose to serve (if it records one),
   and the model ``OUT/run/index`` was built with (``window_index.json``).
5. **where questions point**: with the base model, the share of questions whose best-matching
   window of their relevant chunk is the chunk's first window (windows of
   ``window_splitter(base)``, ``split_text`` of the chunk text), vs an even spread (mean of
   1/windows), over chunks of >= 3 and >= 2 windows; for the job's held-out questions and for
   people's. If ``val_dataset.json`` records ``query_positions`` (qid -> {"passage": i,
   "passages": P, ...}), also the recorded first-passage share vs even spread.

Usage (heavy: runs the whole job; one heavy job at a time on this machine)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_long_job.py --out /tmp/longjob
    # smoke (about 60 chunks, ~12 held out):
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_long_job.py \
        --out /tmp/longjob_smoke --max-chunks 60

A rerun on the same ``--out`` reuses the job's finished stages (the pipeline's ledger).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HUMAN = ROOT.parent / "shared" / "data" / "human"
LONG = HUMAN / "squad_long_even"
SHORT = HUMAN / "squad_even"
METRIC = "ndcg@10"
#: Keys every ComparisonTable.to_dict() has; anything else in report.json is printed.
TABLE_KEYS = {"baseline", "results", "deltas", "paired", "win_loss"}
CHOICE_KEYS = ("choice", "chosen", "served", "serve", "serving", "selected", "best")

TIMES: dict[str, float] = {}


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        TIMES[name] = time.perf_counter() - start
        print(f"--- {name}: {TIMES[name]:.0f} s", flush=True)


def norm(text: str) -> str:
    return " ".join(text.split())


# -- 1. docs -----------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def articles() -> dict[str, str]:
    """title -> article text (its squad_long_even chunks joined in corpus order)."""
    parts: dict[str, list[str]] = {}
    for row in read_jsonl(LONG / "corpus.jsonl"):
        parts.setdefault(row["title"], []).append(row["text"].strip())
    return {title: "\n\n".join(chunks) for title, chunks in parts.items()}


def file_name(i: int, title: str) -> str:
    return f"{i:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', title).strip('_')}.txt"


def write_docs(docs_dir: Path, texts: dict[str, str]) -> dict[str, str]:
    """Write one file per article (unchanged files left alone); file name -> title."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for i, (title, text) in enumerate(texts.items()):
        name = file_name(i, title)
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        names[name] = title
    stray = sorted(p.name for p in docs_dir.iterdir() if p.name not in names)
    if stray:
        raise SystemExit(f"{docs_dir} holds files this bench did not write: {stray[:5]}")
    return names


# -- 2. the job --------------------------------------------------------------------------------


def config_flags(parser: argparse.ArgumentParser) -> list[str]:
    """One ``--field-name`` per RunConfig field but docs/out (value: JSON if it parses)."""
    from llama_index_finetune_embed.pipeline import RunConfig

    group = parser.add_argument_group("RunConfig fields (default: the package's)")
    names = []
    for name, field in RunConfig.model_fields.items():
        if name in ("docs", "out"):
            continue
        default = " (bench default: local)" if name == "llm" else ""
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", default=None,
                           metavar="VALUE",
                           help=(field.description or "") + default)  # fmt: skip
        names.append(name)
    return names


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def make_config(docs_dir: Path, run_dir: Path, args: argparse.Namespace, names: list[str]) -> Any:
    from llama_index_finetune_embed.pipeline import RunConfig

    options = {"llm": "local"}
    for name in names:
        raw = getattr(args, f"cfg_{name}")
        if raw is not None:
            options[name] = raw if name == "llm" else parse_value(raw)
    config = RunConfig(docs=[str(docs_dir)], out=str(run_dir), **options)
    print("config:", json.dumps({k: v for k, v in config.model_dump().items() if k != "docs"}))
    return config


# -- 3. people's questions on the held-out chunks -----------------------------------------------


def load_run(run_dir: Path) -> tuple[list[Any], list[str]]:
    from llama_index.core.schema import TextNode

    nodes = [TextNode.from_dict(d) for d in json.loads((run_dir / "chunks.json").read_text())]
    split = json.loads((run_dir / "split.json").read_text())
    return nodes, list(split["val"])


def chunk_spans(
    nodes: list[Any], names: dict[str, str], norm_articles: dict[str, str]
) -> tuple[dict[str, tuple[str, int, int]], list[str]]:
    """chunk id -> (title, start, end) in its normalised article; ids not located."""
    spans, lost = {}, []
    for node in nodes:
        title = names.get(str(node.metadata.get("file_name")))
        text = norm(node.get_content())
        start = norm_articles[title].find(text) if title in norm_articles else -1
        if start < 0:
            lost.append(node.node_id)
            continue
        spans[node.node_id] = (title, start, start + len(text))
    return spans, lost


def paragraph_spans(norm_articles: dict[str, str]) -> tuple[dict[str, tuple[str, int, int]], list]:
    """squad_even paragraph id -> (title, start, end) in its normalised article; ids not found."""
    spans, lost, cursor = {}, [], {}
    for row in read_jsonl(SHORT / "corpus.jsonl"):
        title, text = row["title"], norm(row["text"])
        article = norm_articles.get(title, "")
        start = article.find(text, cursor.get(title, 0))
        if start < 0:
            start = article.find(text)
        if start < 0 or not text:
            lost.append(row["_id"])
            continue
        spans[row["_id"]] = (title, start, start + len(text))
        cursor[title] = start + len(text)
    return spans, lost


def people_dataset(
    nodes: list[Any], val_ids: list[str], names: dict[str, str], texts: dict[str, str],
    min_share: float, run_dir: Path,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    from llama_index.core.schema import MetadataMode

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    norm_articles = {t: norm(x) for t, x in texts.items()}
    cspans, lost_chunks = chunk_spans(nodes, names, norm_articles)
    pspans, lost_paras = paragraph_spans(norm_articles)
    val_set = set(val_ids)
    by_title: dict[str, list[tuple[str, int, int]]] = {}
    for cid, (title, s, e) in cspans.items():
        by_title.setdefault(title, []).append((cid, s, e))

    stats = {"chunks": len(nodes), "held-out chunks": len(val_ids),
             "chunks not located in their article": len(lost_chunks),
             "paragraphs": len(pspans) + len(lost_paras),
             "paragraphs not located in their article": len(lost_paras)}  # fmt: skip
    para_docs: dict[str, list[str]] = {}
    in_job, cut, in_val, two, dropped = 0, 0, 0, 0, set()
    for pid, (title, ps, pe) in pspans.items():
        cover = []
        for cid, cs, ce in by_title.get(title, []):
            share = max(0, min(pe, ce) - max(ps, cs)) / (pe - ps)
            if share > 0:
                cover.append((share, cid))
        if not cover:
            continue  # in no chunk of the job (sampled away by --max-chunks)
        in_job += 1
        cover.sort(key=lambda x: (-x[0], x[1]))
        if cover[0][0] < min_share:
            cut += 1
        held = [cid for share, cid in cover if share >= min_share and cid in val_set]
        if not held and any(cid in val_set for _, cid in cover):
            dropped.add(pid)  # partly in a held-out chunk, but less than min_share of it
        if held:
            in_val += 1
            two += len(held) > 1
            para_docs[pid] = held
    stats.update({
        "paragraphs in some job chunk": in_job,
        f"... of which no chunk holds >= {min_share:.0%}": cut,
        f"paragraphs in a held-out chunk (>= {min_share:.0%})": in_val,
        "... of which in 2+ held-out chunks": two,
        f"paragraphs partly held out, < {min_share:.0%} in any held-out chunk (dropped)":
            len(dropped),
    })  # fmt: skip

    queries = {r["_id"]: r["text"] for r in read_jsonl(SHORT / "queries.jsonl")}
    relevant: dict[str, list[str]] = {}
    n_dropped = 0
    with open(SHORT / "qrels" / "train.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            n_dropped += row["corpus-id"] in dropped
            docs = para_docs.get(row["corpus-id"])
            if float(row["score"]) > 0 and docs and row["query-id"] in queries:
                have = relevant.setdefault(row["query-id"], [])
                have += [d for d in docs if d not in have]
    val_nodes = [n for n in nodes if n.node_id in val_set]
    corpus = {n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in val_nodes}
    stats["people's questions on held-out chunks"] = len(relevant)
    stats["people's questions dropped (paragraph cut, < min share in a held-out chunk)"] = n_dropped
    stats["held-out chunks with a people's question"] = len({d for v in relevant.values()
                                                             for d in v})  # fmt: skip

    job_val = json.loads((run_dir / "val_dataset.json").read_text(encoding="utf-8"))
    jc = job_val["corpus"]
    stats["corpus ids == val_dataset.json ids"] = set(jc) == set(corpus)
    stats["corpus texts differing from val_dataset.json"] = sum(
        1 for cid, text in corpus.items() if jc.get(cid) != text
    )
    people = EmbeddingQAFinetuneDataset(
        queries={q: queries[q] for q in relevant}, corpus=corpus, relevant_docs=relevant,
        metadata_mode="embed",
    )  # fmt: skip
    return people, stats


# -- 4. scores ---------------------------------------------------------------------------------


def table_lines(table: Any) -> list[str]:
    base = table.baseline
    lines = [f"| row | {METRIC} x100 | diff vs first [95% CI] |", "|---|---:|---|"]
    for r in table.results:
        value = 100 * r.metrics[METRIC]
        if r.name == base:
            lines.append(f"| {r.name} | {value:.1f} | (reference) |")
        else:
            d = table.paired_diff(r.name, METRIC)
            lines.append(f"| {r.name} | {value:.1f} | {100 * d.delta:+.1f} "
                         f"[{100 * d.ci[0]:+.1f}, {100 * d.ci[1]:+.1f}] |")  # fmt: skip
    return lines


def report_rows(report: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(row, NDCG@10 x100, diff vs first with CI) of the job's report.json."""
    paired = {(p["model"], p["metric"]): p for p in report.get("paired", [])}
    rows = []
    for r in report.get("results", []):
        value = 100 * r["metrics"].get(METRIC, float("nan"))
        p = paired.get((r["name"], METRIC))
        diff = (
            "(reference)"
            if p is None
            else (f"{100 * p['delta']:+.1f} [{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}]")
        )
        rows.append((r["name"], value, diff))
    return rows


def report_choice(report: dict[str, Any]) -> Any:
    extra = {k: v for k, v in report.items() if k not in TABLE_KEYS}
    found = {k: v for k, v in extra.items() if any(c in k.lower() for c in CHOICE_KEYS)}
    return found or None, extra


def short_choice(choice: Any) -> str:
    """The recorded choice in one line: its row/model/long_chunks/reason when it has them."""
    if choice is None:
        return "none recorded"
    for value in choice.values() if isinstance(choice, dict) else [choice]:
        if isinstance(value, dict) and "row" in value:
            keys = ("row", "model", "long_chunks", "metric", "reason")
            return json.dumps({k: value[k] for k in keys if k in value})
    return json.dumps(choice)[:600]


def choice_row(choice: Any, rows: list[str]) -> str | None:
    """The row name a recorded choice points at (a name, or a dict holding one), if any."""
    values: list[Any] = []
    stack = [choice]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("row"), str) and item["row"] in rows:
                return str(item["row"])
            stack += list(item.values())
        elif isinstance(item, (list, tuple)):
            stack += list(item)
        else:
            values.append(item)
    for v in values:
        if isinstance(v, str) and v in rows:
            return v
    return None


def index_model(run_dir: Path, base_model: str) -> tuple[str, dict[str, Any]]:
    """(which row the index serves, its config file)."""
    from llama_index_finetune_embed.serving import CONFIG_NAME

    path = run_dir / "index" / CONFIG_NAME
    if not path.is_file():
        found = sorted(p.name for p in (run_dir / "index").glob("*")) if (
            run_dir / "index").is_dir() else []  # fmt: skip
        return f"no {CONFIG_NAME} (index folder holds {found})", {}
    cfg = json.loads(path.read_text(encoding="utf-8"))
    model = str(cfg.get("embed_model"))
    from llama_index_finetune_embed.embeddings import resolve_model_id

    def same(a: str, b: str) -> bool:
        try:
            return Path(a).resolve() == Path(b).resolve() or a == b
        except OSError:
            return a == b

    if same(model, str(run_dir / "model")):
        kind = "finetuned"
    elif same(model, resolve_model_id(base_model)) or model == base_model:
        kind = "base (as LlamaIndex loads it)"
    else:
        kind = f"other ({model})"
    plain = str(cfg.get("long_chunks", "window")).lower() not in ("window", "windows")
    return (f"{kind} (long_chunks={cfg['long_chunks']})" if plain else f"{kind} + windows"), cfg


# -- 5. where questions point ------------------------------------------------------------------


def first_window_shares(model: Any, ds: Any) -> dict[int, dict[str, float]]:
    """min windows -> {questions, first share, even share, last share} for ``ds``'s questions."""
    import numpy as np

    from llama_index_finetune_embed.embeddings import embed_queries
    from llama_index_finetune_embed.serving import window_splitter

    splitter = window_splitter(model)
    windows = {cid: splitter.split_text(text) for cid, text in ds.corpus.items()}
    qids = [q for q in ds.queries if len(windows[ds.relevant_docs[q][0]]) >= 2]
    if not qids:
        return {}
    cids = sorted({ds.relevant_docs[q][0] for q in qids})
    flat = [w for c in cids for w in windows[c]]
    vecs = np.asarray(model.get_text_embedding_batch(flat), dtype=np.float64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    start, at = {}, 0
    for c in cids:
        start[c], at = at, at + len(windows[c])
    qv = np.asarray(embed_queries(model, [ds.queries[q] for q in qids]), dtype=np.float64)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    picks = []
    for q, v in zip(qids, qv, strict=True):
        c = ds.relevant_docs[q][0]
        n = len(windows[c])
        best = int(np.argmax(vecs[start[c] : start[c] + n] @ v))
        picks.append((n, best))
    return {m: shares([(n, b) for n, b in picks if n >= m]) for m in (3, 2)}


def shares(picks: list[tuple[int, int]]) -> dict[str, float]:
    if not picks:
        return {"questions": 0, "first": float("nan"), "even": float("nan"),
                "last": float("nan")}  # fmt: skip
    k = len(picks)
    return {
        "questions": k,
        "first": 100 * sum(b == 0 for _, b in picks) / k,
        "even": 100 * sum(1 / n for n, _ in picks) / k,
        "last": 100 * sum(b == n - 1 for n, b in picks) / k,
    }


def recorded_positions(run_dir: Path) -> tuple[dict[int, dict[str, float]], str] | None:
    data = json.loads((run_dir / "val_dataset.json").read_text(encoding="utf-8"))
    pos = data.get("query_positions")
    if not pos:
        return None
    items = [(int(v["passages"]), int(v["passage"])) for v in pos.values()
             if isinstance(v, dict) and "passage" in v and "passages" in v]  # fmt: skip
    one_based = any(i == n for n, i in items) and not any(i == 0 for _, i in items)
    offset = 1 if one_based else 0
    note = f"{len(items)} recorded, passage index {'1' if one_based else '0'}-based (inferred)"
    picks = [(n, i - offset) for n, i in items]
    return {m: shares([(n, b) for n, b in picks if n >= m]) for m in (3, 2)}, note


def shares_line(name: str, s: dict[int, dict[str, float]]) -> list[str]:
    out = []
    for m in (3, 2):
        v = s.get(m) or shares([])
        out.append(f"| {name} | >= {m} | {v['questions']} | {v['first']:.0f}% | "
                   f"{v['even']:.0f}% | {v['last']:.0f}% |")  # fmt: skip
    return out


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="bench folder: OUT/docs, OUT/run")
    parser.add_argument(
        "--min-share",
        type=float,
        default=0.8,
        help="a paragraph is in a chunk holding at least this share of it",
    )
    parser.add_argument(
        "--skip-run",
        action="store_true",
        help="do not call run_pipeline: read an earlier OUT/run as it is",
    )
    names = config_flags(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("llama_index_finetune_embed").setLevel(logging.INFO)
    out = Path(args.out).resolve()
    docs_dir, run_dir = out / "docs", out / "run"
    started = time.perf_counter()

    with part("1. docs"):
        texts = articles()
        names_map = write_docs(docs_dir, texts)
        print(f"{len(names_map)} articles -> {docs_dir} "
              f"({sum(len(t) for t in texts.values()):,} characters)")  # fmt: skip

    with part("2. main job"):
        from llama_index_finetune_embed.pipeline import run_pipeline

        config = make_config(docs_dir, run_dir, args, names)
        if args.skip_run:
            print("--skip-run: reading", run_dir)
        else:
            run_pipeline(config, announce=lambda line: print(line, flush=True))
        base_model = config.base_model

    with part("3. people's questions on the held-out chunks"):
        nodes, val_ids = load_run(run_dir)
        people, stats = people_dataset(nodes, val_ids, names_map, texts, args.min_share, run_dir)
        for k, v in stats.items():
            print(f"  {k}: {v}")

    with part("4. scores"):
        from llama_index_finetune_embed.evaluate import compare_embed_models
        from llama_index_finetune_embed.pipeline.stages import BASE_ROW

        table = compare_embed_models(
            people, {BASE_ROW: base_model, "finetuned": str(run_dir / "model")},
            index="both", top_k=10, show_progress=False,
        )  # fmt: skip
        people_lines = table_lines(table)
        print(f"people's questions ({len(people.queries)} on {len(people.corpus)} held-out "
              "chunks):")  # fmt: skip
        print("\n".join(people_lines))
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        rrows = report_rows(report)
        n_job = next((r.get("num_queries") for r in report.get("results", [])), "?")
        print(f"\nthe job's report ({n_job} held-out questions, report.json):")
        print(f"| row | {METRIC} x100 | diff vs first [95% CI] |\n|---|---:|---|")
        for name, value, diff in rrows:
            print(f"| {name} | {value:.1f} | {diff} |")
        canary = report.get("canary")
        crows = report_rows(canary) if isinstance(canary, dict) and "results" in canary else []
        if crows:
            n_can = canary["results"][0].get("num_queries", "?")
            print(f"\nthe job's canary ({n_can} questions, report.json 'canary'):")
            print(f"| row | {METRIC} x100 | diff vs first [95% CI] |\n|---|---:|---|")
            for name, value, diff in crows:
                print(f"| {name} | {value:.1f} | {diff} |")
        choice, extra = report_choice(report)
        print("\nreport.json keys beyond the table:", sorted(extra) or "none")
        print("row chosen to serve (report.json):",
              json.dumps(choice) if choice is not None else "none recorded")  # fmt: skip
        people_rank = sorted(table.results, key=lambda r: -r.metrics[METRIC])
        report_rank = sorted(rrows, key=lambda r: -r[1])
        row_names = [r.name for r in table.results]
        chosen = choice_row(choice, row_names)
        tied = [r[0] for r in report_rank if abs(r[1] - report_rank[0][1]) < 1e-9]
        report_top = chosen or tied[0]
        people_best = people_rank[0].name
        print(f"ranking by {METRIC}: report {[r[0] for r in report_rank]}")
        print(f"ranking by {METRIC}: people {[r.name for r in people_rank]}")
        served, index_cfg = index_model(run_dir, base_model)
        print("index config:", json.dumps(index_cfg))
        print("index serves:", served)
        gaps = {name: table.paired_diffs(name, people_best, [METRIC])[0]
                for name in ([chosen] if chosen else tied)
                if name in row_names and name != people_best}  # fmt: skip
        top_src = "recorded choice" if chosen else "top by " + METRIC
        if not chosen and len(tied) > 1:
            top_src += f", tied with {tied[1:]}"

    with part("5. where questions point (base model)"):
        from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
        from llama_index_finetune_embed.embeddings import load_embed_model

        base = load_embed_model(base_model)
        job_val = EmbeddingQAFinetuneDataset.from_json(run_dir / "val_dataset.json")
        job_shares = first_window_shares(base, job_val)
        people_shares = first_window_shares(base, people)
        where = ["| questions | chunks of | questions counted | first window | even spread "
                 "| last window |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        where += shares_line("job's held-out", job_shares)
        where += shares_line("people's (squad_even)", people_shares)
        print("\n".join(where))
        recorded = recorded_positions(run_dir)
        rec_lines = []
        if recorded is None:
            rec_lines.append("query_positions: not in val_dataset.json")
        else:
            rshares, note = recorded
            rec_lines.append(f"query_positions ({note}), first passage vs even spread:")
            rec_lines += [f"  passages >= {m}: {v['questions']} questions, first "
                          f"{v['first']:.0f}% vs even {v['even']:.0f}%" if v["questions"]
                          else f"  passages >= {m}: no questions"
                          for m, v in rshares.items()]  # fmt: skip
        print("\n".join(rec_lines))

    total = time.perf_counter() - started
    print("\n## bench_long_job summary\n")
    print(f"out: {out}; chunks {stats['chunks']} ({stats['held-out chunks']} held out); "
          f"people's questions {len(people.queries)}; job's held-out questions "
          f"{len(job_val.queries)}\n")  # fmt: skip
    print("people's questions (compare_embed_models, top_k=10):\n")
    print("\n".join(people_lines))
    print("\njob's report (report.json):\n")
    print(f"| row | {METRIC} x100 | diff vs first [95% CI] |\n|---|---:|---|")
    for name, value, diff in rrows:
        print(f"| {name} | {value:.1f} | {diff} |")
    print(
        f"\n- report ranks first: **{report_top}** ({top_src}); recorded choice: "
        f"{short_choice(choice)}"
    )
    print(f"- people's best row: **{people_best}**")
    for name, gap in gaps.items():
        print(
            f"- people: {name} minus {people_best}: {100 * gap.delta:+.1f} "
            f"[{100 * gap.ci[0]:+.1f}, {100 * gap.ci[1]:+.1f}]"
        )
    if not gaps:
        print("- people: the report's first row is people's best row")
    print(
        f"- windows row first in report: {'windows' in report_top}"
        + (f" (ties: {tied})" if not chosen and len(tied) > 1 else "")
    )
    print(f"- index serves: {served} (matches report's first row: {served == report_top})")
    print("\nwhere questions point (base model, best window of the relevant chunk):\n")
    print("\n".join(where))
    print("\n" + "\n".join(rec_lines))
    print(
        "\nwall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items())
        + f"; total {total:.0f} s"
    )


if __name__ == "__main__":
    main()
