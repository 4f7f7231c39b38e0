"""finetune.sampler: conflict keys, chunk-aware / chunk-grouped / topic batches."""

from __future__ import annotations

import pytest
from _finetune_data import toy_finetune_dataset

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset


@pytest.fixture
def toy_dataset() -> EmbeddingQAFinetuneDataset:
    return toy_finetune_dataset()


def test_no_batch_mixes_questions_of_one_chunk_or_overlapping_chunks(toy_dataset):
    from llama_index_finetune_embed.finetune.sampler import (
        ChunkAwareBatchSampler,
        chunk_conflict_keys,
        row_keys,
    )
    from llama_index_finetune_embed.finetune.trainer import build_train_dataset

    words = [f"w{i}" for i in range(60)]
    corpus = dict(toy_dataset.corpus)
    corpus["a"] = " ".join(words[:40])
    corpus["b"] = " ".join(words[30:])  # opens with the last 10 words of "a"
    ds = toy_dataset.model_copy(update={"corpus": corpus})
    keys = chunk_conflict_keys(ds.corpus, overlap_words=8)
    assert keys["a"] & keys["b"]
    assert not keys["a"] & keys[next(iter(toy_dataset.corpus))]

    rows = [(qid, doc, []) for qid, _, doc in ds.pairs()]
    row_key = row_keys(ds, rows, keys)
    sampler = ChunkAwareBatchSampler(
        build_train_dataset(ds, rows), batch_size=4, drop_last=False, keys=row_key, seed=1
    )
    seen = []
    for batch in sampler:
        docs = [rows[i][1] for i in batch]
        assert len(set(docs)) == len(docs)
        seen += batch
    assert sorted(seen) == list(range(len(rows)))
    assert len(list(sampler)) == len(sampler)


def test_grouped_batches_keep_a_chunks_questions_together_and_overlaps_apart(toy_dataset):
    from llama_index_finetune_embed.finetune.sampler import (
        ChunkAwareBatchSampler,
        chunk_conflict_keys,
        chunk_groups,
        row_keys,
    )
    from llama_index_finetune_embed.finetune.trainer import build_train_dataset

    words = [f"w{i}" for i in range(60)]
    corpus = {**toy_dataset.corpus, "a": " ".join(words[:40]), "b": " ".join(words[30:])}
    queries = {**toy_dataset.queries, "qa": "about a", "qb": "about b", "qb2": "more on b"}
    relevant = {**toy_dataset.relevant_docs, "qa": ["a"], "qb": ["b"], "qb2": ["b"]}
    ds = EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    rows = [(qid, doc, []) for qid, _, doc in ds.pairs()]
    groups, keys = chunk_groups(rows, row_keys(ds, rows, chunk_conflict_keys(ds.corpus, 8)))
    assert len(groups) == 10 and sorted(len(g) for g in groups)[-1] == 2
    sampler = ChunkAwareBatchSampler(
        build_train_dataset(ds, rows), batch_size=4, drop_last=False, groups=groups, keys=keys,
        seed=3,
    )
    seen = []
    for batch in sampler:
        docs = [rows[i][1] for i in batch]
        assert not {"a", "b"} <= set(docs)  # overlapping chunks are never in-batch negatives
        for doc in set(docs):  # every question of a chunk comes with it
            assert docs.count(doc) == sum(1 for _, d, _ in rows if d == doc)
        assert len(set(docs)) <= 4
        seen += batch
    assert sorted(seen) == list(range(len(rows)))
    assert len(list(sampler)) == len(sampler) == 3


def test_topic_batches_draw_each_batch_from_one_cluster_of_similar_questions(toy_dataset):
    import torch

    from llama_index_finetune_embed.finetune.sampler import (
        ChunkAwareBatchSampler,
        chunk_conflict_keys,
        chunk_groups,
        row_keys,
        topic_clusters,
    )
    from llama_index_finetune_embed.finetune.trainer import build_train_dataset

    rows = [(qid, doc, []) for qid, _, doc in toy_dataset.pairs()]
    groups, keys = chunk_groups(rows, row_keys(toy_dataset, rows, chunk_conflict_keys(
        toy_dataset.corpus, 8)))
    topic_of = {doc: i % 2 for i, doc in enumerate(toy_dataset.corpus)}  # two topics

    class Directions:  # stands in for the model: a question points the way of its chunk's topic
        def encode(self, texts, **kwargs):
            by_text = {toy_dataset.queries[q]: topic_of[d] for q, d, _ in rows}
            noise = torch.Generator().manual_seed(0)
            base = torch.eye(2)[[by_text[t] for t in texts]]
            return base + 0.1 * torch.rand(len(texts), 2, generator=noise)

    texts = [toy_dataset.queries[qid] for qid, _, _ in rows]
    clusters = topic_clusters(Directions(), texts, groups, batch_size=4, seed=1)
    assert len(set(clusters)) == 2
    pairs = {(topic_of[rows[g[0]][1]], c) for g, c in zip(groups, clusters, strict=True)}
    assert len(pairs) == 2  # one cluster per topic
    assert topic_clusters(Directions(), texts, groups, batch_size=8) == [0] * 8
    sampler = ChunkAwareBatchSampler(build_train_dataset(toy_dataset, rows), batch_size=4,
                                       drop_last=False, groups=groups, keys=keys,
                                       clusters=clusters, seed=5)
    for batch in sampler:
        assert len({topic_of[rows[i][1]] for i in batch}) == 1
        assert len(batch) == 8  # four chunks with both their questions
