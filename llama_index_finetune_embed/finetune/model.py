"""Helpers of the finetune stage: prompts, rows, conflict-aware batches, negatives, card (private).

Imported lazily by :mod:`llama_index_finetune_embed.finetune`, so the heavy imports at the top of
this module never run on ``import llama_index_finetune_embed``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from llama_index_finetune_embed._io import text_hash

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

logger = logging.getLogger(__name__)

# model-name fragment -> (query prompt, document prompt), for models saved without prompts
_FAMILY_PROMPTS: dict[str, tuple[str, str]] = {
    "bge-": ("Represent this sentence for searching relevant passages: ", ""),
    "e5-": ("query: ", "passage: "),
    "nomic-embed": ("search_query: ", "search_document: "),
}
_MAX_RESAMPLE_PASSES = 2


# -- prompts ------------------------------------------------------------------------------


def resolve_prompts(
    model: SentenceTransformer,
    model_id: str,
    query_prompt: str | None,
    document_prompt: str | None,
) -> tuple[str, str]:
    """(query prompt, document prompt): explicit > saved with the model > known family > ``""``."""
    from llama_index_finetune_embed._models import prompt_pair

    saved_query, saved_doc = prompt_pair(dict(model.prompts or {}))
    family_query, family_doc = "", ""
    if not any((model.prompts or {}).values()):
        name = model_id.lower()
        for fragment, pair in _FAMILY_PROMPTS.items():
            if fragment in name and "bge-m3" not in name:
                family_query, family_doc = pair
                break
    query = query_prompt if query_prompt is not None else (saved_query or family_query)
    doc = document_prompt if document_prompt is not None else (saved_doc or family_doc)
    return query, doc


def default_max_seq_length(model: SentenceTransformer, cap: int = 512) -> int:
    """The longest input the model's position embeddings and tokenizer take, at most ``cap``."""
    limits = [cap]
    first = model[0]
    config = getattr(getattr(first, "auto_model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models reserve two positions for the padding offset
        offset = 2 if getattr(config, "model_type", "") in {"roberta", "xlm-roberta"} else 0
        limits.append(positions - offset)
        return min(limits)
    # Only without position embeddings to go by: sentence-transformers copies its configured
    # max_seq_length (256 for all-MiniLM-L6-v2, which takes 512) into the tokenizer's limit.
    tokenizer_max = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < 1_000_000:
        limits.append(tokenizer_max)
    return min(limits)


# -- which rows may share a batch -----------------------------------------------------------


def chunk_conflict_keys(
    corpus: dict[str, str], overlap_words: int | None
) -> dict[str, set[str]]:
    """chunk id -> keys; two chunks sharing a key must never be each other's in-batch negative.

    Every chunk has its id and a hash of its text (identical texts under two ids). With
    ``overlap_words``, a chunk whose opening ``overlap_words`` words occur inside another chunk
    (the overlap a text splitter leaves between neighbours) shares a key with that chunk.
    """
    keys = {cid: {f"c:{cid}", f"t:{text_hash(text)}"} for cid, text in corpus.items()}
    if not overlap_words:
        return keys
    words = {cid: re.findall(r"\w+", text.lower()) for cid, text in corpus.items()}
    heads: dict[tuple[str, ...], list[str]] = {}
    for cid, toks in words.items():
        if len(toks) > overlap_words:  # a chunk shorter than the window is left alone
            heads.setdefault(tuple(toks[:overlap_words]), []).append(cid)
    for cid, toks in words.items():
        for start in range(1, len(toks) - overlap_words + 1):
            owners = heads.get(tuple(toks[start : start + overlap_words]))
            for owner in owners or ():
                if owner != cid:
                    keys[cid].add(f"o:{owner}")
                    keys[owner].add(f"o:{owner}")
    return keys


def row_keys(
    dataset: EmbeddingQAFinetuneDataset,
    rows: Sequence[tuple[str, str, list[str]]],
    chunk_keys: dict[str, set[str]],
) -> list[frozenset[str]]:
    """Keys of each training row (query id, positive id, negative ids): query text + chunk keys."""
    result = []
    for qid, doc_id, negatives in rows:
        keys = {f"q:{text_hash(dataset.queries[qid])}"}
        for cid in [*dataset.relevant_docs[qid], doc_id, *negatives]:
            keys |= chunk_keys[cid]
        result.append(frozenset(keys))
    return result


class ChunkAwareBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which no two items share a key (same chunk, overlap, or query).

    A stricter ``NoDuplicatesBatchSampler``: identical texts are caught as there, and so are two
    questions about one chunk and chunks that overlap, which have different texts. An item is a
    row, or with ``groups`` a group of rows (all questions of one chunk) that travel together;
    ``keys`` and ``clusters`` are per item. With ``clusters``, batches are filled one cluster at
    a time (clusters in a random order).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        keys: Sequence[frozenset[str]],
        clusters: Sequence[int] | None = None,
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.groups = [list(g) for g in groups] if groups is not None else None
        if self.groups is not None and sum(map(len, self.groups)) != len(dataset):
            raise ValueError(f"groups cover {sum(map(len, self.groups))} of {len(dataset)} rows")
        items = len(self.groups) if self.groups is not None else len(dataset)
        if len(keys) != items:
            raise ValueError(f"got {len(keys)} keys for {items} items")
        if clusters is not None and len(clusters) != len(keys):
            raise ValueError(f"got {len(clusters)} cluster ids for {len(keys)} items")
        self.keys = list(keys)
        self.clusters = list(clusters) if clusters is not None else None
        self.items_per_batch = batch_size
        if self.groups is not None:
            # batches vary in rows; accelerate's DDP sharding drops every batch whose length
            # differs from ``batch_size`` unless it is None ("indices with dynamic length")
            self.batch_size = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        expected, yielded = len(self), 0
        for _ in range(1 + _MAX_RESAMPLE_PASSES):
            for batch in self._one_pass(generator):
                if self.groups is not None:
                    batch = [row for item in batch for row in self.groups[item]]
                yield batch
                yielded += 1
                if yielded >= expected:
                    return
            if yielded == 0:
                return

    def _one_pass(self, generator: torch.Generator) -> Iterator[list[int]]:
        remaining = torch.randperm(len(self.keys), generator=generator).tolist()
        if self.clusters is not None:  # clusters in a random order, each one's rows together
            rank = torch.randperm(max(self.clusters) + 1, generator=generator).tolist()
            remaining.sort(key=lambda i: rank[self.clusters[i]])
        while remaining:
            batch: list[int] = []
            taken: set[str] = set()
            deferred: list[int] = []
            for index in remaining:
                if len(batch) < self.items_per_batch and taken.isdisjoint(self.keys[index]):
                    batch.append(index)
                    taken |= self.keys[index]
                else:
                    deferred.append(index)
            remaining = deferred
            if len(batch) == self.items_per_batch or not self.drop_last:
                yield batch
            else:
                return

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.keys) // self.items_per_batch
        return (len(self.keys) + self.items_per_batch - 1) // self.items_per_batch


def max_compatible_rows(keys: Sequence[frozenset[str]]) -> int:
    """How many rows a greedy pass can put in one batch (an upper bound check for batch size)."""
    taken: set[str] = set()
    count = 0
    for row in keys:
        if taken.isdisjoint(row):
            taken |= row
            count += 1
    return count


# -- hard negatives -------------------------------------------------------------------------


def mine_hard_negatives(
    model: SentenceTransformer,
    dataset: EmbeddingQAFinetuneDataset,
    pairs: Sequence[tuple[str, str]],
    chunk_keys: dict[str, set[str]],
    *,
    num_negatives: int,
    relative_margin: float,
    prompts: tuple[str, str],
    batch_size: int,
) -> list[list[str] | None]:
    """Negative chunk ids per (query id, positive id) pair, mined with the model before training.

    As sentence-transformers' ``mine_hard_negatives(relative_margin=...)``: the closest chunks
    scoring at most ``(1 - relative_margin)`` x the positive, so near-duplicates of the positive
    (likely false negatives) are skipped. Unlike it, every relevant chunk of the query and every
    chunk overlapping the positive are excluded too (the library only knows the one positive
    text). A pair with fewer than ``num_negatives`` usable chunks gets ``None``.
    """
    corpus_ids = list(dataset.corpus)
    qids = list(dict.fromkeys(qid for qid, _ in pairs))
    encode = {"batch_size": batch_size, "normalize_embeddings": True, "convert_to_numpy": True}
    docs = model.encode([dataset.corpus[c] for c in corpus_ids], prompt=prompts[1], **encode)
    queries = model.encode([dataset.queries[q] for q in qids], prompt=prompts[0], **encode)
    scores = queries @ docs.T  # (queries, chunks)
    position = {cid: i for i, cid in enumerate(corpus_ids)}
    qrow = {qid: i for i, qid in enumerate(qids)}
    result: list[list[str] | None] = []
    for qid, doc_id in pairs:
        row = scores[qrow[qid]]
        positive = float(row[position[doc_id]])
        ceiling = positive - relative_margin * abs(positive)
        banned = set().union(*(chunk_keys[c] for c in [*dataset.relevant_docs[qid], doc_id]))
        picked: list[str] = []
        for i in np.argsort(-row):
            if row[i] <= ceiling and chunk_keys[corpus_ids[i]].isdisjoint(banned):
                picked.append(corpus_ids[i])
                if len(picked) == num_negatives:
                    break
        result.append(picked if len(picked) == num_negatives else None)
    return result


def build_train_dataset(
    dataset: EmbeddingQAFinetuneDataset,
    rows: Sequence[tuple[str, str, list[str]]],
) -> Dataset:
    """HF ``Dataset`` with columns anchor, positive[, negative_1, ...] in row order."""
    from datasets import Dataset

    columns: dict[str, list[str]] = {
        "anchor": [dataset.queries[qid] for qid, _, _ in rows],
        "positive": [dataset.corpus[doc_id] for _, doc_id, _ in rows],
    }
    for i in range(len(rows[0][2]) if rows else 0):
        columns[f"negative_{i + 1}"] = [dataset.corpus[negs[i]] for _, _, negs in rows]
    return Dataset.from_dict(columns)


# -- precision and device -----------------------------------------------------------------


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast here: native bf16 on the GPU, AVX512-BF16/AMX on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    is_supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((is_supported and is_supported()) or (amx and amx()))


# -- model card ------------------------------------------------------------------------------


def card_section(summary: dict[str, Any]) -> str:
    """Markdown section appended to the model card: base model, data, recipe and metrics."""
    recipe = summary["recipe"]
    lines = [
        "",
        "## Finetuned with llama-index-finetune-embed",
        "",
        f"- Base model: `{summary['base_model']}`",
        f"- Training data: {summary['train_queries']} queries over {summary['train_chunks']} "
        f"chunks ({summary['train_rows']} training pairs; corpus text rendered with "
        f"metadata mode `{summary['metadata_mode']}`)",
        f"- Validation data: {summary['val_queries']} queries" if summary["val_queries"] else
        "- Validation data: none",
        f"- Training time: {summary['train_seconds']:.1f} s",
        f"- Query prompt: `{recipe['query_prompt']!r}`, document prompt: "
        f"`{recipe['document_prompt']!r}` (saved in `config_sentence_transformers.json`)",
        "",
        "Recipe:",
        "",
    ]
    lines += [f"- {key}: `{value}`" for key, value in recipe.items() if "prompt" not in key]
    metrics = summary.get("metrics") or {}
    if metrics:
        lines += ["", "Validation metrics (final model):", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items())]
    if summary.get("guard"):
        lines += ["", "Guard (NDCG@10 x100 against the base as LlamaIndex loads it):", ""]
        lines += [summary["guard"]["message"]]
    return "\n".join(lines) + "\n"


# -- trainer assembly ------------------------------------------------------------------------


def default_device() -> str:
    """The GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


_ATTENTION_DROPOUT = re.compile(r"(attention\.(self\.)?dropout|attn_dropout|attention_dropout)$")


def set_dropout(model: SentenceTransformer, hidden: float | None, attention: float | None) -> None:
    """Set the dropout probabilities of the hidden and attention layers (``None``: keep)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            p = attention if _ATTENTION_DROPOUT.search(name) else hidden
            if p is not None:
                module.p = p


def freeze_lower_layers(model: SentenceTransformer, layers: int) -> int:
    """Freeze the token embeddings and the lowest ``layers`` encoder layers; return params frozen.

    Backward then stops early, which saves time on a CPU; the upper layers adapt to the domain.
    """
    if layers <= 0:
        return 0
    pattern = re.compile(r"(^|\.)(embeddings|(encoder\.)?layers?\.(\d+))\.")
    frozen = 0
    for name, param in model.named_parameters():
        match = pattern.search(name)
        if match and (match.group(4) is None or int(match.group(4)) < layers):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ValueError("freeze_layers: this model has no embeddings/encoder layers to freeze")
    return frozen


def average_with_base(
    model: SentenceTransformer, base_state: dict[str, torch.Tensor], base_weight: float
) -> None:
    """In place: every floating weight becomes ``base_weight * base + (1 - base_weight) * own``."""
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            base = base_state.get(name)
            if base is not None and tensor.is_floating_point():
                tensor.mul_(1.0 - base_weight).add_(base.to(tensor), alpha=base_weight)


def precision_flags(precision: str, device: str) -> dict[str, bool]:
    """``bf16``/``fp16`` training-argument flags for a precision choice on this device."""
    if precision == "auto":
        precision = "bf16" if bf16_supported(device) else "fp32"
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on the CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def grouped(engine: Any) -> bool:
    """Whether a chunk's questions share its batch and one encoding of it (default loss only)."""
    opts = engine.options
    return bool(opts["group_by_chunk"]) and engine.loss is None and not (
        opts["hard_negatives"] or opts["cached_loss"]
    )


def build_loss(engine: Any) -> torch.nn.Module:
    """The engine's loss: the given one, or (Cached)MNRL, wrapped in MatryoshkaLoss if asked."""
    from sentence_transformers.sentence_transformer import losses

    opts, model = engine.options, engine.model
    if engine.loss is not None:
        loss = engine.loss if isinstance(engine.loss, torch.nn.Module) else engine.loss(model)
    elif grouped(engine):
        from llama_index_finetune_embed._grouped import GroupedMultipleNegativesRankingLoss

        loss = GroupedMultipleNegativesRankingLoss(model, symmetric=opts["symmetric"])
    else:
        directions = ("query_to_doc", "doc_to_query") if opts["symmetric"] else ("query_to_doc",)
        if opts["cached_loss"]:
            loss = losses.CachedMultipleNegativesRankingLoss(
                model, mini_batch_size=opts["mini_batch_size"], directions=directions
            )
        else:
            loss = losses.MultipleNegativesRankingLoss(model, directions=directions)
    dims = opts["matryoshka_dims"]
    if dims:
        width = model.get_embedding_dimension() or max(dims)
        if any(d < 1 or d > width for d in dims):
            raise ValueError(f"matryoshka_dims must be in 1..{width}, got {dims}")
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=sorted(dims, reverse=True))
    return loss


def build_evaluator(engine: Any, name: str) -> Any:
    """InformationRetrievalEvaluator over the engine's val set, with the training prompts."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    val = engine.val_dataset
    return InformationRetrievalEvaluator(
        queries=val.queries,
        corpus=val.corpus,
        relevant_docs={qid: set(docs) for qid, docs in val.relevant_docs.items()},
        name=name,
        batch_size=max(engine.batch_size, 32),
        query_prompt=engine.query_prompt or None,
        corpus_prompt=engine.document_prompt or None,
        show_progress_bar=engine.show_progress,
        write_csv=False,
    )


def build_sampler(engine: Any) -> Callable[..., ChunkAwareBatchSampler]:
    """The batch sampler factory: rows (or chunk groups), their keys, and topic clusters."""
    from llama_index_finetune_embed._grouped import chunk_groups, topic_clusters

    groups, keys = None, engine._keys
    if grouped(engine):
        groups, keys = chunk_groups(engine._rows, engine._keys)
    clusters = None
    if engine.options["topic_batches"]:
        texts = [engine.train_dataset.queries[qid] for qid, _, _ in engine._rows]
        items = groups if groups is not None else [[i] for i in range(len(engine._rows))]
        clusters = topic_clusters(engine.model, texts, items, engine.batch_size,
                                  prompt=engine.query_prompt, seed=engine.options["seed"])
    return partial(ChunkAwareBatchSampler, keys=keys, clusters=clusters, groups=groups)


def build_args(engine: Any, evaluate: bool, best_metric: str) -> Any:
    """Training arguments of the recipe; ``engine.args`` replaces them when given."""
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    if engine.args is not None:  # the user's settings win; fill in what they left at defaults
        if engine.args.batch_sampler == "batch_sampler":
            engine.args.batch_sampler = build_sampler(engine)
        if engine.args.prompts is None:  # train with the prompts the saved model will carry
            engine.args.prompts = _column_prompts(engine)
        return engine.args
    opts = engine.options
    steps = opts["checkpoint_steps"]
    strategy = "steps" if steps else ("epoch" if evaluate else "no")
    extra: dict[str, Any] = {}
    if evaluate:
        extra = {"eval_strategy": strategy, "load_best_model_at_end": True,
                 "metric_for_best_model": best_metric, "greater_is_better": True}
        if steps:
            extra["eval_steps"] = steps
    return SentenceTransformerTrainingArguments(
        output_dir=str(engine.model_output_path / "checkpoints"),
        num_train_epochs=engine.epochs,
        per_device_train_batch_size=engine.batch_size,
        per_device_eval_batch_size=engine.batch_size,
        learning_rate=opts["learning_rate"],
        warmup_steps=opts["warmup_ratio"],
        weight_decay=opts["weight_decay"],
        seed=opts["seed"],
        batch_sampler=build_sampler(engine),
        prompts=_column_prompts(engine),
        save_strategy=strategy,
        save_steps=steps or 500,
        save_total_limit=2,
        logging_steps=max(1, min(50, steps or 50)),
        report_to=[],
        disable_tqdm=not engine.show_progress,
        use_cpu=engine.device == "cpu",
        dataloader_drop_last=False,
        **precision_flags(opts["precision"], engine.device),
        **extra,
    )


def _column_prompts(engine: Any) -> dict[str, str] | None:
    prompts = {"anchor": engine.query_prompt, "positive": engine.document_prompt}
    for i in range(engine.options["hard_negatives"]):
        prompts[f"negative_{i + 1}"] = engine.document_prompt
    return {k: v for k, v in prompts.items() if v} or None


def build_trainer(engine: Any) -> tuple[Any, Any]:
    """(SentenceTransformerTrainer, final evaluator or None) for the engine's settings."""
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer

    opts = engine.options
    if opts["hard_negatives"]:
        pairs = [(qid, doc_id) for qid, doc_id, _ in engine._rows]
        negatives = mine_hard_negatives(
            engine.model, engine.train_dataset, pairs, engine._chunk_keys,
            num_negatives=opts["hard_negatives"], relative_margin=opts["hard_negative_margin"],
            prompts=(engine.query_prompt, engine.document_prompt), batch_size=engine.batch_size,
        )
        rows = [(q, d, n) for (q, d), n in zip(pairs, negatives, strict=True) if n is not None]
        if not rows:
            raise ValueError(
                f"hard_negatives={opts['hard_negatives']}: no training pair has that many chunks "
                "scoring below its positive (minus hard_negative_margin); lower hard_negatives "
                "or hard_negative_margin, or use hard_negatives=0"
            )
        if len(rows) < len(pairs):
            logger.warning("hard negatives: dropped %d of %d pairs without enough usable "
                           "negatives", len(pairs) - len(rows), len(pairs))
        engine._rows = rows
        engine._keys = row_keys(engine.train_dataset, engine._rows, engine._chunk_keys)
    set_dropout(engine.model, opts["dropout"], opts["attention_dropout"])
    freeze_lower_layers(engine.model, opts["freeze_layers"])
    evaluator = build_evaluator(engine, "val") if engine.val_dataset is not None else None
    args = build_args(engine, evaluator is not None, "eval_val_cosine_mrr@10")
    trainer = SentenceTransformerTrainer(
        model=engine.model,
        args=args,
        train_dataset=build_train_dataset(engine.train_dataset, engine._rows),
        loss=build_loss(engine),
        evaluator=evaluator,
        callbacks=[StepCounter()],
    )
    return trainer, evaluator


def _step_counter_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class StepCounter(_step_counter_base()):  # type: ignore[misc]
    """Counts the optimizer steps this process ran (a resumed run skips the ones already done)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


def steps_run(trainer: Any) -> int:
    """Optimizer steps run by this ``trainer.train()`` call."""
    counters = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StepCounter)]
    return counters[0].steps if counters else -1


def summary(
    engine: Any, trainer: Any, final: dict[str, float], seconds: float, resumed_from: str | None
) -> dict[str, Any]:
    """What ``metrics.json`` and the model card report: data, recipe, time and final metrics."""
    args = trainer.args
    recipe = {
        "loss": type(trainer.loss).__name__ if not isinstance(trainer.loss, dict) else "multi",
        "batch_size": args.per_device_train_batch_size * max(1, args.world_size),
        "epochs": args.num_train_epochs,
        "learning_rate": args.learning_rate,
        "max_seq_length": engine.max_seq_length,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        "batch_sampler": ("chunk-grouped" if grouped(engine) else "chunk-aware no-duplicates")
        + (", topic clusters" if engine.options["topic_batches"] else ""),
        **{k: v for k, v in engine.options.items() if k not in {"learning_rate", "precision"}},
        "query_prompt": engine.query_prompt,
        "document_prompt": engine.document_prompt,
        "base_weight": engine.base_weight,
    }
    state = trainer.state
    return {
        "base_model": engine.model_id,
        "train_queries": len(engine.train_dataset.queries),
        "train_chunks": len(engine.train_dataset.corpus),
        "train_rows": len(engine._rows),
        "val_queries": len(engine.val_dataset.queries) if engine.val_dataset else 0,
        "metadata_mode": engine.train_dataset.metadata_mode or "unknown",
        "train_seconds": round(seconds, 2),
        "global_steps": state.global_step,
        "steps_run": steps_run(trainer),
        "resumed_from": resumed_from,
        "best_checkpoint": state.best_model_checkpoint,
        "recipe": recipe,
        "metrics": {k: float(v) for k, v in final.items()},
    }
