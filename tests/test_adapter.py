from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from llama_index_finetune_embed import (
    AdapterEmbedding,
    EmbeddingAdapterFinetuneEngine,
    EmbeddingQAFinetuneDataset,
)
from llama_index_finetune_embed._embed_cache import EmbeddingCache
from llama_index_finetune_embed.adapter import mrr_at_k

N_TOPICS = 12


class HashEmbedding(BaseEmbedding):
    """Deterministic bag-of-words hashed into ``dim`` buckets; counts the texts it embeds."""

    dim: int = 128
    query_instruction: str | None = None
    _calls: dict[str, int] = PrivateAttr(default_factory=lambda: {"query": 0, "text": 0})

    def vector(self, text: str) -> list[float]:
        v = np.zeros(self.dim)
        for token in text.lower().split():
            v[int(hashlib.sha1(token.encode()).hexdigest(), 16) % self.dim] += 1.0
        return (v / max(np.linalg.norm(v), 1e-9)).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        self._calls["query"] += 1
        return self.vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        self._calls["text"] += 1
        return self.vector(text)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


class RaggedEmbedding(HashEmbedding):
    """Returns a shorter vector for some texts: a broken base model."""

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.vector(text)[: 64 if "topic3" in text else None]


def toy_dataset() -> EmbeddingQAFinetuneDataset:
    """Queries share no word with their chunk (``askN`` vs ``topicN``): the base model is poor."""
    corpus = {
        f"c{i}": f"the annual report on topic{i} and related matters" for i in range(N_TOPICS)
    }
    queries, relevant = {}, {}
    for i in range(N_TOPICS):
        for j, text in enumerate([f"what about ask{i}", f"tell me more on ask{i} please"]):
            queries[f"q{i}-{j}"] = text
            relevant[f"q{i}-{j}"] = [f"c{i}"]
    return EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def train_mrr(model: BaseEmbedding, base: HashEmbedding, ds: EmbeddingQAFinetuneDataset) -> float:
    docs = np.array([base.vector(text) for text in ds.corpus.values()])
    rows = {doc_id: i for i, doc_id in enumerate(ds.corpus)}
    queries = np.array([model.get_query_embedding(text) for text in ds.queries.values()])
    return mrr_at_k(queries, docs, [{rows[d] for d in ds.relevant_docs[q]} for q in ds.queries])


def engine(tmp_path: Path, base: BaseEmbedding, **kwargs) -> EmbeddingAdapterFinetuneEngine:
    kwargs.setdefault("epochs", 12)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("learning_rate", 3e-2)
    return EmbeddingAdapterFinetuneEngine(
        kwargs.pop("dataset", toy_dataset()), base, model_output_path=tmp_path / "out", **kwargs
    )


@pytest.mark.parametrize("kind", ["linear", "two_layer"])
def test_training_lifts_train_mrr_where_the_base_model_is_poor(tmp_path, kind):
    base, ds = HashEmbedding(), toy_dataset()
    before = train_mrr(base, base, ds)
    eng = engine(tmp_path, base, adapter=kind)
    eng.finetune()
    after = train_mrr(eng.get_finetuned_model(), base, ds)
    assert before < 0.5
    assert after > 0.9
    assert [h["epoch"] for h in eng.history] == list(range(1, 13))
    assert eng.history[-1]["loss"] < eng.history[0]["loss"]


def test_rerun_embeds_nothing_again_and_each_side_uses_its_own_call(tmp_path):
    base = HashEmbedding()
    engine(tmp_path, base, epochs=1).finetune()
    assert base._calls == {"query": 2 * N_TOPICS, "text": N_TOPICS}
    second = engine(tmp_path, base, epochs=1)
    second.finetune()
    assert base._calls == {"query": 2 * N_TOPICS, "text": N_TOPICS}
    assert second.cache.computed == 0


def test_cache_separates_models_and_sides_and_survives_a_torn_shard(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, HashEmbedding())
    first = cache.embed(["hello world", "hello world", "other"], side="query")
    assert first.shape == (3, 128) and np.array_equal(first[0], first[1])
    assert cache.computed == 2  # duplicates embedded once
    assert cache.embed(["hello world"], side="text").shape == (1, 128)
    assert cache.computed == 3  # the text side is cached apart from the query side
    other = EmbeddingCache(tmp_path, HashEmbedding(query_instruction="query: "))
    assert other.path != cache.path
    (cache.path / "query-torn.npz").write_bytes(b"PK\x03\x04 torn")
    again = EmbeddingCache(tmp_path, HashEmbedding())
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(again.embed(["other"], side="query")[0], first[2])
    assert again.computed == 0
    assert "query-torn.npz" in caplog.text


def test_untrained_adapter_is_the_base_model(tmp_path):
    base, ds = HashEmbedding(), toy_dataset()
    # queries equal to their chunks: the base model is perfect there, so epoch 0 is kept
    perfect = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": text for i, text in enumerate(ds.corpus.values())},
        corpus=ds.corpus,
        relevant_docs={f"q{i}": [doc_id] for i, doc_id in enumerate(ds.corpus)},
    )
    eng = engine(tmp_path, base, epochs=3, val_dataset=perfect)
    eng.finetune()
    model = eng.get_finetuned_model()
    assert len(eng.history) == 3 and all("val_mrr@10" in h for h in eng.history)
    for query in ("what about ask3", "the annual report on topic1"):
        np.testing.assert_allclose(model.get_query_embedding(query), base.vector(query), atol=1e-6)


def test_documents_are_embedded_by_the_base_model_unchanged(tmp_path):
    base = HashEmbedding()
    eng = engine(tmp_path, base, epochs=3)
    eng.finetune()
    model = eng.get_finetuned_model()
    text = "the annual report on topic2"
    assert model.get_text_embedding(text) == base.vector(text)
    assert model.get_text_embedding_batch([text, "x"]) == [base.vector(text), base.vector("x")]
    query = "what about ask2"
    adapted = model.get_query_embedding(query)
    assert not np.allclose(adapted, base.vector(query))
    assert np.linalg.norm(adapted) == pytest.approx(np.linalg.norm(base.vector(query)), rel=1e-5)


@pytest.mark.parametrize("kind", ["linear", "two_layer"])
def test_save_and_load_round_trip_gives_identical_vectors(tmp_path, kind):
    base = HashEmbedding()
    eng = engine(tmp_path, base, adapter=kind, epochs=3)
    eng.finetune()
    trained = eng.get_finetuned_model()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == [
        "adapter.safetensors",
        "adapter_config.json",
    ]
    loaded = AdapterEmbedding.from_dir(tmp_path / "out", HashEmbedding())
    resaved = AdapterEmbedding.from_dir(loaded.save(tmp_path / "copy"), HashEmbedding())
    for query in ("what about ask1", "unseen words here"):
        assert loaded.get_query_embedding(query) == trained.get_query_embedding(query)
        assert resaved.get_query_embedding(query) == trained.get_query_embedding(query)
    assert loaded.adapter == kind and loaded.dim == 128


def test_an_index_built_with_the_base_model_is_queried_through_the_adapter(tmp_path):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    base, ds = HashEmbedding(), toy_dataset()
    eng = engine(tmp_path, base)
    eng.finetune()
    model = eng.get_finetuned_model()
    nodes = [TextNode(id_=doc_id, text=text) for doc_id, text in ds.corpus.items()]
    index = VectorStoreIndex(nodes, embed_model=base)
    text_calls = base._calls["text"]
    retriever = index.as_retriever(similarity_top_k=1, embed_model=model)
    top = [retriever.retrieve(q)[0].node.node_id for q in ds.queries.values()]
    assert base._calls["text"] == text_calls  # no document was embedded again
    assert (
        np.mean([t == ds.relevant_docs[q][0] for t, q in zip(top, ds.queries, strict=True)]) > 0.9
    )
    # and as the index's own embed model
    own = VectorStoreIndex(nodes, embed_model=model).as_retriever(similarity_top_k=1)
    assert own.retrieve("what about ask4")[0].node.node_id == "c4"


def test_loading_for_another_base_model_is_one_clear_error(tmp_path):
    eng = engine(tmp_path, HashEmbedding(), epochs=1)
    eng.finetune()
    other = HashEmbedding(model_name="another-model")
    with pytest.raises(ValueError, match="trained on base model .*another-model"):
        AdapterEmbedding.from_dir(tmp_path / "out", other)
    with pytest.raises(ValueError, match=r"shape \(n, 128\)"):
        AdapterEmbedding.from_dir(
            tmp_path / "out", other, check_base_model=False
        ).adapt_query_embeddings(np.zeros((1, 64)))
    with pytest.raises(FileNotFoundError, match="no saved adapter"):
        AdapterEmbedding.from_dir(tmp_path / "missing", HashEmbedding())
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model"] == {"class": "HashEmbedding", "model_name": "unknown"}
    (tmp_path / "out" / "adapter_config.json").write_text(json.dumps({**config, "adapter": "x"}))
    with pytest.raises(ValueError, match="not an adapter config"):
        AdapterEmbedding.from_dir(tmp_path / "out", HashEmbedding())


def test_bad_inputs_are_clear_errors_where_they_enter(tmp_path):
    ds = toy_dataset()
    empty = EmbeddingQAFinetuneDataset(queries={}, corpus={"c": "text"}, relevant_docs={})
    with pytest.raises(ValueError, match="train_dataset is empty"):
        EmbeddingAdapterFinetuneEngine(empty, HashEmbedding())
    with pytest.raises(TypeError, match="must be a LlamaIndex BaseEmbedding"):
        EmbeddingAdapterFinetuneEngine(ds, "text-embedding-3-small")
    with pytest.raises(ValueError, match="adapter must be one of"):
        EmbeddingAdapterFinetuneEngine(ds, HashEmbedding(), adapter="mlp")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        EmbeddingAdapterFinetuneEngine(ds, HashEmbedding(), epochs=0)
    with pytest.raises(RuntimeError, match="call finetune"):
        engine(tmp_path, HashEmbedding()).get_finetuned_model()
    with pytest.raises(ValueError, match="vectors of different lengths"):
        engine(tmp_path, RaggedEmbedding()).finetune()


def test_a_query_with_two_relevant_chunks_is_not_its_own_negative():
    import torch

    from llama_index_finetune_embed.adapter import _adapter_module

    eng = EmbeddingAdapterFinetuneEngine(toy_dataset(), HashEmbedding(), scale=1.0)
    module = _adapter_module("linear", 4, 0)
    queries, docs = torch.eye(4), torch.eye(4)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.0)
    # one query, two relevant chunks: each row's only other column is masked, so loss is 0
    assert eng._step(module, optimizer, queries, docs, [{0, 1}], [(0, 0), (0, 1)]) == 0.0
    # two queries with one chunk each: the other chunk is a real negative
    assert eng._step(module, optimizer, queries, docs, [{0}, {1}], [(0, 0), (1, 1)]) > 0.1


def test_llama_index_finetunings_dataset_class_is_accepted(tmp_path):
    class Legacy:  # same fields as llama_index.finetuning's EmbeddingQAFinetuneDataset
        queries = {"q": "what about ask1"}
        corpus = {"c": "topic1"}
        relevant_docs = {"q": ["c"]}

    eng = engine(tmp_path, HashEmbedding(), dataset=Legacy(), epochs=1)
    assert isinstance(eng.train_dataset, EmbeddingQAFinetuneDataset)


@pytest.mark.slow
def test_huggingface_base_model_batches_queries_through_the_cache(tmp_path, tiny_model_path):
    from llama_index_finetune_embed.embeddings import load_embed_model

    base = load_embed_model(tiny_model_path, query_instruction="query: ")
    eng = engine(tmp_path, base, epochs=1)
    eng.finetune()
    cached = eng.cache.embed(["what about ask1"], side="query")[0]
    assert eng.cache.computed == 3 * N_TOPICS
    np.testing.assert_allclose(cached, base.get_query_embedding("what about ask1"), atol=1e-5)
    assert not np.allclose(cached, base.get_text_embedding("what about ask1"), atol=1e-3)
    loaded = AdapterEmbedding.from_dir(
        tmp_path / "out", load_embed_model(tiny_model_path, query_instruction="query: ")
    )
    assert len(loaded.get_query_embedding("who founded lyft?")) == 32


# -- the example's offline smoke test ---------------------------------------------------------


def _load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "adapter_openai.py"
    spec = importlib.util.spec_from_file_location("adapter_openai_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_runs_offline_with_a_local_model(tmp_path, tiny_model_path, capsys):
    ds = toy_dataset()
    ds.save_json(tmp_path / "train.json")
    ds.save_json(tmp_path / "val.json")
    argv = ["--train", str(tmp_path / "train.json"), "--val", str(tmp_path / "val.json")]
    argv += [
        "--embed-model",
        str(tiny_model_path),
        "--epochs",
        "3",
        "--output",
        str(tmp_path / "out"),
    ]
    results = _load_example().main(argv)
    assert set(results) == {"base", "adapter"}
    assert set(results["adapter"]) == {"hit@5", "mrr@5"}
    assert all(0.0 <= v <= 1.0 for scores in results.values() for v in scores.values())
    assert (tmp_path / "out" / "adapter.safetensors").is_file()
    assert "adapter  hit@5" in capsys.readouterr().out


def test_example_without_key_or_model_says_what_to_do(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="OPENAI_API_KEY is not set.*--embed-model"):
        _load_example().build_embed_model(None)
