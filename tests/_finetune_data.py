"""The toy finetuning set shared by the finetune-stage tests: two questions per toy chunk."""

from __future__ import annotations

from conftest import TOY_TEXTS

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

QUESTIONS = [
    ("When was Lyft founded?", "Who rides with Lyft?"),
    ("What does Uber operate?", "Does Uber deliver freight?"),
    ("Why did revenue grow in 2021?", "What recovered after the lockdowns?"),
    ("How are drivers classified?", "What is subject to legal challenge?"),
    ("What covers auto liability claims?", "What reserves are kept?"),
    ("Where are bikes offered?", "What is the light vehicles program?"),
    ("Who bought the autonomous vehicle unit?", "What was sold to Toyota?"),
    ("What are the risk factors?", "What about the driver network?"),
]


def toy_finetune_dataset() -> EmbeddingQAFinetuneDataset:
    """16 questions, two per toy chunk (the two must never be in-batch negatives of each other)."""
    pairs = [(q, text) for text, qs in zip(TOY_TEXTS, QUESTIONS, strict=True) for q in qs]
    return EmbeddingQAFinetuneDataset.from_pairs(pairs)
