"""The main job's ``report.md``: what was run on what, the comparison table, and its caveats.

Rendering only: it takes the pipeline's objects as data (``Any``) and never imports the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.evaluate import ComparisonTable


def render_run_report(
    table: ComparisonTable,
    train: EmbeddingQAFinetuneDataset,
    val: EmbeddingQAFinetuneDataset,
    choices: Any,
    config: Any,
    ledger: dict[str, dict[str, Any]],
    out: Path,
    *,
    served: dict[str, Any] | None = None,
) -> str:
    """The main job's ``report.md``: what it serves and why, what was run on what, then the
    comparison and its details.

    ``choices`` and ``config`` are the run's ``Choices`` and ``RunConfig``; read here:
    ``config.docs``/``.base_model``, ``choices.llm``/``.llm_reason``/``.base_model_reason``.
    ``ledger`` is what each finished stage recorded (``RunState.done``), ``out`` the run's folder,
    ``served`` the row the job serves (``pipeline.serve.pick_served``).
    """
    state = ledger
    docs = _source_label(config)
    skipped = state["chunks"].get("skipped_files", 0)
    if skipped:
        docs += f" ({skipped} binary file(s) skipped, see the log)"
    lines = [
        "# finetune-embed report",
        "",
        *_served_lines(served, out, _yardstick(val, choices)),
        f"- documents: {docs} -> {state['chunks']['chunks']} chunks "
        f"({state['split']['train']} train / {state['split']['val']} held out, split by chunk)",
        f"- question source: {choices.llm} ({choices.llm_reason})",
        f"- training pairs: {len(train)} ({_source_counts(train)})",
        f"- held-out questions: {len(val)} ({_source_counts(val)}) over {len(val.corpus)} chunks",
        f"- base model: {config.base_model} ({choices.base_model_reason})",
        f"- finetuned model: {out / 'model'}",
        *_first_row_lines(config, served),
        "- rows `+ windows`: the same model in `build_window_index` (each chunk longer than the "
        "model's window read as windows, scored by its best window)",
        *_position_lines(train, val),
        *_few_questions_note(val),
        *_copied_sentences_note(val),
        *_guard_lines(out / "model" / "metrics.json"),
        "",
        table.to_markdown(),
        "",
        "![base vs finetuned](report.png)",
        "",
        *_canary_lines(served),
        *_switch_lines(config, served, out),
    ]
    return "\n".join(lines)


def _first_row_lines(config: Any, served: dict[str, Any] | None) -> list[str]:
    """What the first row (the status quo every difference is against) is."""
    base = (
        "the base model as LlamaIndex loads it (`HuggingFaceEmbedding`, its configured length, "
        "long chunks truncated)"
    )
    if not getattr(config, "current_model", None):
        return [f"- first row: {base}; every difference is against it"]
    how = (served or {}).get("current_how") or "embedded as LlamaIndex embeds with it"
    return [
        f"- first row: `{config.current_model}`, the model your index uses today ({how}); "
        f"every difference is against it. The row `base (as LlamaIndex loads it)` is {base}"
    ]


def _switch_lines(config: Any, served: dict[str, Any] | None, out: Path) -> list[str]:
    """How to load what the job serves, and the one line of the user's code that changes."""
    index_dir = out / "index"
    store = getattr(config, "to_store", None)
    if store:
        from llama_index_finetune_embed.serving import parse_store_url

        url = parse_store_url(store)
        where = f"its vectors in `{url.redacted}`"
        if url.kind == "postgres":
            where += "; a password comes from `PGPASSWORD`"
    else:
        where = f"its vectors in `{index_dir}`"
    load = [
        "```python",
        "from llama_index_finetune_embed import load_window_index",
        "",
        f'index = load_window_index("{index_dir}")  # the served model comes back with it',
        "retriever = index.as_retriever(similarity_top_k=5)  # or index.as_query_engine(llm=...)",
        "```",
        "",
    ]
    if served and served.get("model") == "current":
        return [
            "## What to do",
            "",
            "Nothing beat the model your index uses today on these questions without a real loss:"
            f" keep your index as it is. The index written for comparison ({where}) holds that "
            "same model's vectors and loads with:",
            "",
            *load,
        ]
    return [
        "## Switch to it",
        "",
        f"The new index ({where}, the model beside it) loads with:",
        "",
        *load,
        "In your code the one line that changes is where the index is made: "
        f'`index = load_window_index("{index_dir}")` instead of '
        "`index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)` (or "
        "`load_index_from_storage(...)`); retrievers, query engines and filters stay as they are,"
        " and your own index is untouched (switch back by restoring that line).",
        "",
    ]


def _source_label(config: Any) -> str:
    """The job's source in words, for the report."""
    if getattr(config, "from_store", None):
        from llama_index_finetune_embed.serving import parse_store_url

        return f"the chunks of {parse_store_url(config.from_store).redacted}"
    if getattr(config, "from_index", None):
        return f"the chunks of the index in {config.from_index}"
    return ", ".join(config.docs) if config.docs else "Python's language reference (pydoc_data)"


def _served_lines(served: dict[str, Any] | None, out: Path, yardstick: str) -> list[str]:
    """The choice first: which row the index serves and why (``pipeline.serve``), on what
    yardstick, and what such verdicts have carried over to on people's questions."""
    if not served:
        return []
    return [
        f"**Served: {served['row']}** in `{out / 'index'}` "
        f"(`load_window_index(\"{out / 'index'}\")`): {served['reason']}. Yardstick: "
        f"{yardstick}.",
        "",
        *CARRY_OVER,
        "",
    ]


#: What verdicts on generated questions have and have not carried over to on questions people
#: wrote (docs/results.md#generated-verdicts-and-peoples-questions has the commands and dates).
CARRY_OVER = [
    "How far such a verdict carries: it is measured on questions an LLM wrote, not on questions "
    "people asked. On SQuAD's long chunks the job's own report read the finetuned model in "
    "windows +11.4 [+5.3, +17.6] NDCG@10 and people's questions on the same chunks +7.9 "
    "[+6.0, +9.8] (same direction, smaller); on 12 public 10-K filings a \"+5.2 [+2.0, +8.4], "
    "real gain\" over 366 questions the local LLM wrote read -2.0 [-7.8, +3.6] on 46 questions "
    "analysts wrote (not resolved), where the base in windows read +1.6 [-2.2, +5.8]. Check a "
    "switch on a few questions your users really ask (`finetune-embed evaluate`)."
]


def _yardstick(val: EmbeddingQAFinetuneDataset, choices: Any) -> str:
    """What the verdicts rest on, in words: how many held-out questions, written by what."""
    counts = _source_counts(val)
    who = {"local": "the local LLM (SmolLM2-135M)", "none": "no LLM"}.get(
        choices.llm, str(choices.llm)
    )
    return f"{len(val.queries)} held-out questions ({counts}; question source: {who})"


def _position_lines(
    train: EmbeddingQAFinetuneDataset, val: EmbeddingQAFinetuneDataset
) -> list[str]:
    """Where each dataset's questions point in their chunks: a lead-biased yardstick shows."""
    lines = []
    for name, ds in (("training pairs", train), ("held-out questions", val)):
        summary = ds.position_summary()
        if summary is None:
            lines.append(f"- where {name} point: not recorded")
        elif not summary["long_questions"]:
            lines.append(f"- where {name} point: every chunk fits one passage (nothing to spread)")
        else:
            lines.append(
                f"- where {name} point: {summary['first_share']:.0%} of the "
                f"{summary['long_questions']} about chunks of 2+ passages ask about the first "
                f"passage (an even spread: {summary['even_share']:.0%})"
            )
    return lines


def _canary_lines(served: dict[str, Any] | None) -> list[str]:
    """The rows on the canary (questions people wrote), the choice's second check."""
    if not served or not served.get("rows"):
        return []
    lines = [
        "The same rows on the canary (171 questions people wrote about the Python FAQ, shipped "
        "with the package), NDCG@10 x100 [95% interval of the difference]:",
        "",
        "| row | held-out | canary |",
        "|:--|--:|--:|",
    ]
    for name, row in served["rows"].items():
        cells = [
            f"{row[k]:.1f} ({row[k + '_delta']:+.1f} [{row[k + '_ci'][0]:+.1f}, "
            f"{row[k + '_ci'][1]:+.1f}])"
            for k in ("held_out", "canary")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


#: Held-out questions below which the report says that it cannot show gains of a few points.
ENOUGH_QUESTIONS = 100


def _few_questions_note(val: EmbeddingQAFinetuneDataset) -> list[str]:
    if len(val.queries) >= ENOUGH_QUESTIONS:
        return []
    asked = len(val.corpus)
    return [
        f"- only {len(val.queries)} held-out questions (fewer than {ENOUGH_QUESTIONS}): the "
        f"question source wrote usable questions for few of the {asked} held-out chunks, so this "
        "table cannot show differences of a few points (see its resolution below); the guard's "
        "canary of questions people wrote is the steadier check here"
    ]


def _copied_sentences_note(val: EmbeddingQAFinetuneDataset) -> list[str]:
    copied = sum(1 for q in val.queries if val.query_sources.get(q) in ("ict", "crop"))
    if not copied:
        return []
    return [
        f"- {copied} of the held-out \"questions\" are sentences copied from their own chunks (no "
        "LLM wrote questions): finding a chunk from its own words is easy for any model, so "
        "this table says little about questions people ask; run with an LLM for a real yardstick"
    ]


def _guard_lines(metrics_path: Path) -> list[str]:
    """The guard's decision (``finetune()`` recorded it in ``metrics.json``), in plain words."""
    if not metrics_path.is_file():
        return []
    guard = json.loads(metrics_path.read_text(encoding="utf-8")).get("guard")
    if not guard:
        return ["- guard: off"]
    checks = "; ".join(
        f"{c['name']} ({c['queries']} questions) {c['base']:.1f} -> {c['model']:.1f} "
        f"[{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}]"
        for c in guard["tried"][0]["checks"]
    )
    return [
        f"- {guard['message']}",
        f"- guard checks of the finetuned model before the guard, NDCG@10 x100 base -> "
        f"finetuned [95% interval of the difference]: {checks}",
    ]


def _source_counts(ds: EmbeddingQAFinetuneDataset) -> str:
    from collections import Counter

    counts = Counter(ds.query_sources.get(qid, "unknown") for qid in ds.queries)
    return ", ".join(f"{n} {src}" for src, n in counts.most_common()) or "no source recorded"
