"""Stage 3, generate: questions for the training and held-out chunks.

Reads ``job.train_nodes`` and ``job.val_nodes``; asks the chosen LLM (an API LLM for both sides,
or offline: pseudo-queries and local-LLM questions), caching finished chunks in
``DIR/cache/*.jsonl`` (a rerun or a new split asks again only for changed chunks); writes
``DIR/train_dataset.json`` and ``DIR/val_dataset.json`` and fills ``job.train`` and ``job.val``.
Also what a dry run asks: the chunks questions are written for and the bill of the API calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.pipeline.choices import Choices, make_llm
from llama_index_finetune_embed.pipeline.config import RunConfig
from llama_index_finetune_embed.pipeline.stages.job import Job, _pick, logger
from llama_index_finetune_embed.pipeline.state import inputs_digest

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.generate import GenerationEstimate


def generate_inputs(config: RunConfig, choices: Choices) -> dict[str, Any]:
    from llama_index_finetune_embed.generate import GenerationSettings

    return {
        "llm": choices.llm,
        # long chunks are asked passage by passage (questions from every part of a chunk)
        "passage_words": GenerationSettings().passage_words,
        **_pick(config, "questions_per_chunk", "offline_train", "seed", "max_val_chunks"),
        # the offline cap: it picks the chunks that API-LLM runs never sample
        **({} if choices.llm.startswith("openai:") else _pick(config, "max_train_chunks")),
    }


def asked_val_nodes(val_nodes: Sequence[TextNode], config: RunConfig) -> list[TextNode]:
    """The held-out chunks questions are written for: a seeded sample of ``max_val_chunks``
    (all when there are fewer). Retrieval is still scored against every held-out chunk."""
    from llama_index_finetune_embed.documents import sample_chunks

    return sample_chunks(val_nodes, config.max_val_chunks, seed=config.seed)


def generate_outputs(out: Path) -> tuple[Path, ...]:
    return (out / "train_dataset.json", out / "val_dataset.json")


def make_datasets(job: Job) -> dict[str, Any]:
    """Questions for train and val chunks.

    With an API LLM both sides get LLM questions. Offline, training pairs are inverse-cloze
    pseudo-queries (plus filtered local-LLM questions with ``offline_train="mix"``) and held-out
    questions come from the local LLM alone, so the report measures retrieval of questions.
    Finished chunks are cached in ``DIR/cache/*.jsonl``: an interrupted run loses nothing.
    """
    config, choices = job.config, job.choices
    llm = make_llm(choices.llm)
    asked = asked_val_nodes(job.val_nodes, config)
    train_cache = _cache_for("train", job.train_nodes, job)
    val_cache = _cache_for("val", asked, job)
    train = training_pairs(job.train_nodes, choices.llm, llm, config, train_cache)
    if choices.llm.startswith("openai:"):
        val = _llm_questions(asked, llm, config, val_cache)
    else:
        from llama_index_finetune_embed.generate import offline_val_questions

        val = offline_val_questions(
            asked,
            llm=llm,
            questions_per_chunk=config.questions_per_chunk,
            cache_path=val_cache,
            seed=config.seed,
        )
    left = sum(int(ds.generation_stats.get("chunks_left", 0)) for ds in (train, val))
    if left:
        raise ValueError(
            f"question generation stopped at the budget with {left} chunks not asked yet; the "
            f"questions so far are kept in {job.out / 'cache'}: rerun (with a larger budget) to "
            "continue from there"
        )
    if len(asked) < len(job.val_nodes):  # every held-out chunk is ranked, asked or not
        corpus = {**embed_texts(job.val_nodes), **val.corpus}
        val = val.model_copy(update={"corpus": corpus})
    for name, ds in (("training", train), ("held-out", val)):
        if len(ds) == 0:
            raise ValueError(f"no usable {name} questions were generated; see the log above")
    train_path, val_path = generate_outputs(job.out)
    train.save_json(train_path)
    val.save_json(val_path)
    job.train, job.val = train, val
    return {"train_queries": len(train), "val_queries": len(val)}


def load_datasets(job: Job, record: dict[str, Any]) -> None:
    train_path, val_path = generate_outputs(job.out)
    job.train = EmbeddingQAFinetuneDataset.from_json(train_path)
    job.val = EmbeddingQAFinetuneDataset.from_json(val_path)


def embed_texts(nodes: Sequence[TextNode]) -> dict[str, str]:
    """node id -> the text the index embeds (what questions are written from)."""
    from llama_index.core.schema import MetadataMode

    return {n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}


def cache_path(side: str, texts: dict[str, str], out: Path, inputs: dict[str, Any]) -> Path:
    """``DIR/cache/<side>-<question settings>-<set of chunks>.jsonl``: one file per both."""
    return out / "cache" / f"{side}-{_asked_digest(inputs)}-{inputs_digest(texts)}.jsonl"


def _asked_digest(inputs: dict[str, Any]) -> str:
    """How questions are asked: the generate stage's inputs but the caps, which pick which chunks
    get questions, not how (a new cap reuses them)."""
    caps = ("max_train_chunks", "max_val_chunks")
    return inputs_digest({k: v for k, v in inputs.items() if k not in caps})


def _cache_for(side: str, nodes: Sequence[TextNode], job: Job) -> Path:
    """The generation cache of one side (:func:`cache_path`), started from earlier files of the
    same settings (a file holds chunks keyed by id and text hash), so edited documents or a new
    split ask the LLM again only for changed chunks."""
    from llama_index_finetune_embed.generate import carry_over

    texts, inputs = embed_texts(nodes), job.inputs["generate"]
    path = cache_path(side, texts, job.out, inputs)
    if not path.exists():
        # either side's: a chunk that moved between train and held out keeps its questions
        earlier = sorted(path.parent.glob(f"*-{_asked_digest(inputs)}-*.jsonl"),
                         key=lambda p: p.stat().st_mtime, reverse=True)  # fmt: skip
        carried = carry_over(earlier, path, texts)
        if carried:
            logger.info("%s questions: %d unchanged chunks reused from earlier runs", side, carried)
    return path


def training_pairs(
    nodes: Sequence[TextNode], choice: str, llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    """Training pairs for ``nodes``: API-LLM questions, or the offline pairs (resumable cache)
    over at most ``config.max_train_chunks`` of them."""
    if choice.startswith("openai:"):
        return _llm_questions(nodes, llm, config, cache_path)
    from llama_index_finetune_embed.documents import sample_chunks
    from llama_index_finetune_embed.generate import generate_offline_pairs

    if len(nodes) > config.max_train_chunks:
        logger.info(
            "offline training pairs from %d of %d training chunks (max_train_chunks)",
            config.max_train_chunks, len(nodes),
        )  # fmt: skip
    return generate_offline_pairs(
        sample_chunks(nodes, config.max_train_chunks, seed=config.seed),
        llm=llm if config.offline_train == "mix" else None,
        questions_per_chunk=config.questions_per_chunk,
        cache_path=cache_path,
        seed=config.seed,
    )


#: What a dry run says when questions are not asked of an API.
NO_API_CALLS = "no API calls: questions are made on this machine (no cost)"


def question_bill(
    nodes: Sequence[TextNode], choice: str, config: RunConfig, cache_path: Path
) -> GenerationEstimate | None:
    """What :func:`training_pairs`' API calls for ``nodes`` would cost (None: no API is asked)."""
    if not choice.startswith("openai:"):
        return None
    from llama_index_finetune_embed.generate import estimate_qa_generation

    return estimate_qa_generation(
        nodes, choice.split(":", 1)[1], num_questions_per_chunk=config.questions_per_chunk,
        cache_path=cache_path, max_rpm=config.max_rpm, max_tpm=config.max_tpm, seed=config.seed,
    )  # fmt: skip


def _llm_questions(
    nodes: Sequence[TextNode], llm: Any, config: RunConfig, cache_path: Path
) -> EmbeddingQAFinetuneDataset:
    from llama_index_finetune_embed.generate import generate_qa_embedding_pairs

    return generate_qa_embedding_pairs(
        nodes,
        llm=llm,
        num_questions_per_chunk=config.questions_per_chunk,
        num_workers=config.num_workers,
        max_rpm=config.max_rpm,
        max_tpm=config.max_tpm,
        max_calls=config.max_calls,
        budget_tokens=config.budget_tokens,
        cache_path=cache_path,
        show_progress=True,
        seed=config.seed,
    )
