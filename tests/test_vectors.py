"""The vector cache: one embedding per (model, text) per folder, shared by the evaluate and index
stages (and, for the canary, by runs)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding

from llama_index_finetune_embed.vectors import VectorCache, model_key


class CountingEmbedding(BaseEmbedding):
    """A model with no weights whose vector is a function of the text; counts what it embeds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._seen = Counter()

    def _vector(self, text: str) -> list[float]:
        self._seen[text] += 1
        rng = np.random.default_rng(sum(map(ord, text)) + len(text))
        v = rng.standard_normal(8)
        return (v / np.linalg.norm(v)).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector("q:" + query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector("q:" + query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


def test_only_texts_the_cache_lacks_are_embedded(tmp_path):
    model = CountingEmbedding(model_name="m1")
    cache = VectorCache(tmp_path / "vectors")
    embed = cache.embedder(model)
    first = embed(["a", "b", "a"])
    assert model._seen == Counter({"a": 1, "b": 1})
    assert cache.counts() == {"texts embedded": 2, "vectors reused": 1}
    again = VectorCache(tmp_path / "vectors").embedder(model)(["b", "c", "a"])  # a new process
    assert model._seen == Counter({"a": 1, "b": 1, "c": 1})
    np.testing.assert_allclose(again[0], first[1], rtol=1e-6)
    np.testing.assert_allclose(again[2], first[0], rtol=1e-6)
    np.testing.assert_allclose(again[1], model._vector("c"), rtol=1e-6)


def test_models_sides_and_unfinished_shards_are_kept_apart(tmp_path):
    one, other = CountingEmbedding(model_name="m1"), CountingEmbedding(model_name="m2")
    assert model_key(one) != model_key(other)
    cache = VectorCache(tmp_path)
    cache.embedder(one)(["a"])
    cache.embedder(other)(["a"])
    assert one._seen["a"] == other._seen["a"] == 1  # another model embeds the text itself
    queries = cache.embedder(
        one, side="query", embed_with=lambda qs: [one.get_query_embedding(q) for q in qs]
    )
    queries(["a"])
    assert one._seen["q:a"] == 1
    # a shard whose hashes file is not there yet (a writer killed between its two files)
    (folder,) = [p for p in tmp_path.iterdir() if p.name == model_key(one)]
    for hashes in folder.glob("*.hashes.npy"):
        hashes.unlink()
    VectorCache(tmp_path).embedder(one)(["a"])
    assert one._seen["a"] == 2
    with pytest.raises(ValueError, match="side must be"):
        cache.embedder(one, side="doc")


def test_keep_false_looks_up_and_adds_nothing(tmp_path):
    model = CountingEmbedding(model_name="m1")
    cache = VectorCache(tmp_path)
    cache.embedder(model)(["a"])
    lookup = cache.embedder(model, keep=False)
    lookup(["a", "b"])
    lookup(["b"])
    assert model._seen == Counter({"a": 1, "b": 2})


def test_shards_are_small_and_a_lookup_reads_across_them(tmp_path, monkeypatch):
    from llama_index_finetune_embed import vectors

    monkeypatch.setattr(vectors, "SHARD_ROWS", 3)
    model = CountingEmbedding(model_name="m1")
    texts = [f"t{i}" for i in range(10)]
    want = VectorCache(tmp_path).embedder(model)(texts)
    assert len(list((tmp_path / model_key(model)).glob("*.hashes.npy"))) == 4
    got = VectorCache(tmp_path).embedder(model)(texts[::-1])
    np.testing.assert_allclose(got, want[::-1], rtol=1e-6)
    assert sum(model._seen.values()) == 10


def test_max_models_keeps_the_most_recently_used(tmp_path):
    import os

    cache = VectorCache(tmp_path)
    models = [CountingEmbedding(model_name=f"m{i}") for i in range(3)]
    for age, model in enumerate(models):
        cache.embedder(model)(["a"])
        os.utime(tmp_path / model_key(model), (1_000 + age, 1_000 + age))
    VectorCache(tmp_path, max_models=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(model_key(m) for m in models[1:])


def test_an_evaluator_with_a_cache_embeds_each_text_once(tmp_path):
    """Plain and windows forms of short chunks are the same texts: the second form embeds
    nothing, and a second evaluator over the folder neither; scores are unchanged."""
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.evaluate import compare_embed_models

    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"question {i}" for i in range(6)},
        corpus={f"c{i}": f"chunk number {i} about things" for i in range(6)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(6)},
    )
    model = CountingEmbedding(model_name="m1")
    plain = compare_embed_models(ds, {"m": model}, index="both")
    assert max(model._seen.values()) == 2  # without a cache: each text twice
    model._seen.clear()
    cached = compare_embed_models(ds, {"m": model}, index="both", vector_cache=tmp_path)
    assert set(model._seen.values()) == {1} and len(model._seen) == 12  # 6 chunks + 6 queries
    model._seen.clear()
    compare_embed_models(ds, {"m": model}, index="both", vector_cache=tmp_path)
    assert not model._seen
    same = [json.dumps(t.to_dict(), sort_keys=True) for t in (cached, plain)]
    assert same[0] == same[1]


def test_stored_vectors_rows_share_their_questions_through_the_cache(tmp_path):
    """The first row scored on an index's stored vectors embeds the questions once; the same
    model's row embedded here afterwards reads them back."""
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset, RetrievalEvaluator

    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"question {i}" for i in range(4)},
        corpus={f"c{i}": f"chunk number {i}" for i in range(4)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(4)},
    )
    model = CountingEmbedding(model_name="m1")
    stored = {cid: [model._vector(text)] for cid, text in ds.corpus.items()}
    model._seen.clear()
    evaluator = RetrievalEvaluator(ds, vector_cache=tmp_path, n_resamples=10)
    first = evaluator.score_stored(model, stored, name="today")
    assert sorted(model._seen) == sorted(f"q:question {i}" for i in range(4))
    model._seen.clear()
    again = evaluator(model, name="embedded")
    assert sorted(model._seen) == sorted(ds.corpus.values())  # the chunks only
    assert again.metrics == first.metrics
