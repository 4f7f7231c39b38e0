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
) -> str:
    """The main job's ``report.md``: what was run on what, then the comparison and its details.

    ``choices`` and ``config`` are the run's ``Choices`` and ``RunConfig``; read here:
    ``config.docs``/``.base_model``, ``choices.llm``/``.llm_reason``/``.base_model_reason``.
    ``ledger`` is what each finished stage recorded (``RunState.done``), ``out`` the run's folder.
    """
    state = ledger
    docs = ", ".join(config.docs) if config.docs else "Python's language reference (pydoc_data)"
    skipped = state["chunks"].get("skipped_files", 0)
    if skipped:
        docs += f" ({skipped} binary file(s) skipped, see the log)"
    lines = [
        "# finetune-embed report",
        "",
        f"- documents: {docs} -> {state['chunks']['chunks']} chunks "
        f"({state['split']['train']} train / {state['split']['val']} held out, split by chunk)",
        f"- question source: {choices.llm} ({choices.llm_reason})",
        f"- training pairs: {len(train)} ({_source_counts(train)})",
        f"- held-out questions: {len(val)} ({_source_counts(val)}) over {len(val.corpus)} chunks",
        f"- base model: {config.base_model} ({choices.base_model_reason})",
        f"- finetuned model: {out / 'model'}",
        "- first row: the base model as LlamaIndex loads it (`HuggingFaceEmbedding`, its "
        "configured length, long chunks truncated); every difference is against it",
        "- rows `+ windows`: the same model in `build_window_index` (each chunk longer than the "
        "model's window read as windows, scored by its best window); the run's index, "
        f"`{out / 'index'}`, is the finetuned model built that way: "
        f"`load_window_index(\"{out / 'index'}\")`",
        *_few_questions_note(val),
        *_copied_sentences_note(val),
        *_guard_lines(out / "model" / "metrics.json"),
        "",
        table.to_markdown(),
        "",
        "![base vs finetuned](report.png)",
        "",
    ]
    return "\n".join(lines)


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
