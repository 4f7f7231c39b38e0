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
from llama_index_finetune_embed.adapter._embed_cache import EmbeddingCache
from llama_index_finetune_embed.evaluate.metrics import mrr_at_k

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


@pytest.mark.parametrize("kind", ["linear", "two_layer"])
def test_save_and_load_round_trip_gives_identical_vectors(tmp_path, kind):
    base = HashEmbedding()
    eng = engine(tmp_path, base, adapter=kind, epochs=3)
    eng.finetune()
    trained = eng.get_finetuned_model()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == [
        "adapter_training.json",  # ours: base model, adapter class, history
        "config.json",  # llama-index-embeddings-adapter's BaseAdapter.save
        "pytorch_model.bin",
    ]
    loaded = AdapterEmbedding.from_dir(tmp_path / "out", HashEmbedding())
    resaved = AdapterEmbedding.from_dir(loaded.save(tmp_path / "copy"), HashEmbedding())
    for query in ("what about ask1", "unseen words here"):
        assert loaded.get_query_embedding(query) == trained.get_query_embedding(query)
        assert resaved.get_query_embedding(query) == trained.get_query_embedding(query)
    expected = {"linear": "LinearLayer", "two_layer": "TwoLayerNN"}[kind]
    assert type(loaded.adapter).__name__ == expected and loaded.dim == 128


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
    record = json.loads((tmp_path / "out" / "adapter_training.json").read_text())
    assert record["base_model"] == {"class": "HashEmbedding", "model_name": "unknown"}
    record["adapter_class"] = "notebook_module:CustomNN"
    (tmp_path / "out" / "adapter_training.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="cannot be imported here: pass adapter_cls="):
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
    from llama_index.embeddings.adapter import LinearLayer

    from llama_index_finetune_embed.adapter.train import train_step

    module = LinearLayer(4, 4)
    queries, docs = torch.eye(4), torch.eye(4)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.0)
    # one query, two relevant chunks: each row's only other column is masked, so loss is 0
    assert train_step(module, optimizer, queries, docs, [{0, 1}], [(0, 0), (0, 1)], 1.0) == 0.0
    # two queries with one chunk each: the other chunk is a real negative
    assert train_step(module, optimizer, queries, docs, [{0}, {1}], [(0, 0), (1, 1)], 1.0) > 0.1


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

    # fp32: "auto" is bf16 on an AVX512-BF16 CPU, where a batch and a single query differ by
    # more than the 1e-5 checked below
    base = load_embed_model(tiny_model_path, query_instruction="query: ", precision="fp32")
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
    assert (tmp_path / "out" / "pytorch_model.bin").is_file()
    assert "adapter  hit@5" in capsys.readouterr().out


def test_example_without_key_or_model_says_what_to_do(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="OPENAI_API_KEY is not set.*--embed-model"):
        _load_example().build_embed_model(None)


# -- llama-index-finetuning / llama-index-embeddings-adapter compatibility ---------------------

REFERENCE_ADAPTER_ARGS = [
    "dataset", "embed_model", "batch_size", "epochs", "adapter_model", "dim", "device",
    "model_output_path", "model_checkpoint_path", "checkpoint_save_steps", "verbose", "bias",
]  # fmt: skip


def _ranking(model: BaseEmbedding, base: HashEmbedding, ds: EmbeddingQAFinetuneDataset):
    docs = np.array([base.vector(text) for text in ds.corpus.values()])
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    out = []
    for query in ds.queries.values():
        q = np.asarray(model.get_query_embedding(query))
        out.append(list(np.argsort(-(docs @ (q / np.linalg.norm(q))), kind="stable")))
    return out


def test_the_reference_arguments_come_first_in_its_order():
    import inspect

    params = inspect.signature(EmbeddingAdapterFinetuneEngine.__init__).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["self", *REFERENCE_ADAPTER_ARGS]
    assert params["train_kwargs"].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize("kind", ["linear", "two_layer", "custom"])
def test_the_librarys_adapter_embedding_model_loads_what_we_save_and_ranks_the_same(
    tmp_path, kind
):
    """What the engine saves, llama-index-embeddings-adapter loads: same vectors, same ranking."""
    import torch
    from llama_index.embeddings.adapter import (
        AdapterEmbeddingModel,
        BaseAdapter,
        LinearAdapterEmbeddingModel,
    )
    from llama_index.embeddings.adapter.utils import TwoLayerNN

    class Scaled(BaseAdapter):  # a custom adapter: W x, config from get_config_dict
        def __init__(self, in_features: int, out_features: int) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.linear = torch.nn.Linear(in_features, out_features, bias=False)
            self.linear.weight.data.copy_(torch.eye(in_features))

        def forward(self, embed):
            return self.linear(embed)

        def get_config_dict(self):
            return {"in_features": self.in_features, "out_features": self.out_features}

    base, ds = HashEmbedding(), toy_dataset()
    given = {"linear": {}, "two_layer": {"adapter": "two_layer"}}.get(kind)
    if given is None:
        given = {"adapter_model": Scaled(128, 128)}
    eng = engine(tmp_path, base, epochs=4, **given)
    eng.finetune()
    ours = eng.get_finetuned_model()
    cls = {"linear": None, "two_layer": TwoLayerNN, "custom": Scaled}[kind]
    theirs = AdapterEmbeddingModel(base, str(tmp_path / "out"), cls, device="cpu")
    if kind == "linear":
        assert LinearAdapterEmbeddingModel is AdapterEmbeddingModel
    for query in ("what about ask3", "tell me more on ask7 please", "unseen words"):
        np.testing.assert_allclose(
            ours.get_query_embedding(query), theirs.get_query_embedding(query), atol=1e-6
        )
    assert _ranking(ours, base, ds) == _ranking(theirs, base, ds)
    assert train_mrr(ours, base, ds) > train_mrr(base, base, ds)
    if cls is not None:  # the reference's call: get_finetuned_model(adapter_cls=...)
        again = eng.get_finetuned_model(adapter_cls=cls)
        assert isinstance(again.adapter, cls)
        assert _ranking(again, base, ds) == _ranking(ours, base, ds)
    other = eng.get_finetuned_model(transform_query=False)  # other keywords: the library's model
    assert isinstance(other, AdapterEmbeddingModel)


def test_checkpoints_verbose_and_train_kwargs_as_the_reference(tmp_path, caplog):
    import torch
    from llama_index.embeddings.adapter.utils import TwoLayerNN

    from llama_index_finetune_embed._compat import ReferenceArgumentWarning

    base, ds = HashEmbedding(), toy_dataset()
    with pytest.warns(ReferenceArgumentWarning, match="warmup_steps"):
        eng = EmbeddingAdapterFinetuneEngine(
            ds, base, 8, 2, TwoLayerNN(128, 64, 128, bias=True, add_residual=True), 128,
            torch.device("cpu"), str(tmp_path / "out"), str(tmp_path / "ck"), 3, True,
            optimizer_class=torch.optim.SGD, optimizer_params={"lr": 0.05}, warmup_steps=10,
        )  # fmt: skip
    assert eng.show_progress is True and eng.model_output_path == str(tmp_path / "out")
    eng.finetune()  # 24 pairs / 8 = 3 steps per epoch, 2 epochs: checkpoints at steps 3 and 6
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step_3", "step_6"]
    mid = AdapterEmbedding.from_dir(tmp_path / "ck" / "step_3", base, TwoLayerNN)
    assert len(mid.get_query_embedding("what about ask1")) == 128
    more = EmbeddingAdapterFinetuneEngine.from_model_path(  # go on from a checkpoint
        ds, base, tmp_path / "ck" / "step_6", TwoLayerNN, epochs=1,
        model_output_path=tmp_path / "more",
    )  # fmt: skip
    assert isinstance(more.adapter_model, TwoLayerNN)
    with pytest.raises(TypeError, match="unexpected keyword 'optimiser'"):
        EmbeddingAdapterFinetuneEngine(ds, base, optimiser="sgd")
    with pytest.raises(TypeError, match="must be a llama-index-embeddings-adapter BaseAdapter"):
        EmbeddingAdapterFinetuneEngine(ds, base, adapter_model=torch.nn.Linear(128, 128))
    with pytest.raises(ValueError, match="dim=64, but the base model's vectors have 128"):
        EmbeddingAdapterFinetuneEngine(ds, base, dim=64, model_output_path=tmp_path / "d").finetune(
        )


def test_adapters_saved_in_the_0_1_format_still_load(tmp_path):
    """0.1 saved x + f(x) as adapter.safetensors; it loads as the same function, rescaled aside."""
    import torch
    from safetensors.torch import save_file

    base = HashEmbedding()
    gen = torch.Generator().manual_seed(0)
    weight, bias = 0.1 * torch.randn(128, 128, generator=gen), 0.1 * torch.randn(128, generator=gen)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    save_file({"body.weight": weight, "body.bias": bias}, str(legacy / "adapter.safetensors"))
    config = {"format_version": 1, "adapter": "linear", "dim": 128, "hidden_dim": None,
              "base_model": {"class": "HashEmbedding", "model_name": "unknown"}}  # fmt: skip
    (legacy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="0.1 format.*model.save"):
        model = AdapterEmbedding.from_dir(legacy, base)
    x = torch.tensor(base.vector("what about ask2"))
    old = (x + weight @ x + bias).numpy()  # 0.1 rescaled this to |x|: the direction is the same
    new = np.asarray(model.get_query_embedding("what about ask2"))
    np.testing.assert_allclose(new, old, atol=1e-5)
    model.save(tmp_path / "converted")
    assert (tmp_path / "converted" / "config.json").is_file()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="trained on base model"):
        AdapterEmbedding.from_dir(legacy, HashEmbedding(model_name="other"))
