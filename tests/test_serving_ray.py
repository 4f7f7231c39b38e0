"""Windows embedded on a local Ray cluster (started by the test) retrieve what one process does."""

from __future__ import annotations

import pytest
from conftest import TOY_TEXTS

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _nodes():
    from llama_index.core.schema import TextNode

    return [TextNode(id_=f"chunk-{i}", text=" ".join(TOY_TEXTS[(i + j) % len(TOY_TEXTS)]
                                                     for j in range(3)))
            for i in range(6)]  # fmt: skip


def test_a_window_index_built_on_ray_retrieves_what_one_process_retrieves(
    local_cluster, tiny_model_path
):
    from llama_index_finetune_embed import build_window_index, load_embed_model
    from llama_index_finetune_embed.serving import RayEmbedder

    model = load_embed_model(tiny_model_path)
    here = build_window_index(_nodes(), model, window_tokens=16)
    on_ray = build_window_index(_nodes(), model, window_tokens=16,
                                embed_with=RayEmbedder.of(model, num_actors=2, batch_size=4))
    vectors = lambda index: index.vector_store.data.embedding_dict  # noqa: E731
    assert vectors(on_ray).keys() == vectors(here).keys()
    for query in ("Toyota autonomous vehicles", "drivers as contractors", "insurance reserves"):
        want = here.as_retriever(similarity_top_k=4).retrieve(query)
        got = on_ray.as_retriever(similarity_top_k=4).retrieve(query)
        assert [r.node.node_id for r in got] == [r.node.node_id for r in want]
        assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-6)


def test_only_a_model_ray_workers_can_load_is_taken():
    from llama_index.core.embeddings import MockEmbedding

    from llama_index_finetune_embed.serving import RayEmbedder

    with pytest.raises(ValueError, match="needs a HuggingFaceEmbedding"):
        RayEmbedder.of(MockEmbedding(embed_dim=8))


def _dataset():
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    corpus = {n.node_id: n.text for n in _nodes()}
    questions = ("Toyota autonomous vehicles", "drivers as contractors", "insurance reserves")
    return EmbeddingQAFinetuneDataset(
        queries={f"q{i}": q for i, q in enumerate(questions)}, corpus=corpus,
        relevant_docs={f"q{i}": [f"chunk-{2 * i}"] for i in range(len(questions))},
    )  # fmt: skip


def test_the_report_embedded_on_ray_scores_what_one_process_scores(
    local_cluster, tiny_model_path, monkeypatch
):
    from llama_index_finetune_embed import load_embed_model
    from llama_index_finetune_embed.evaluate import compare_embed_models
    from llama_index_finetune_embed.serving import RayEmbedder

    models = {"base": load_embed_model(tiny_model_path, window_length=18)}  # 16-token windows
    here = compare_embed_models(_dataset(), models, index="both", top_k=3)
    sent = []
    real = RayEmbedder.__call__
    monkeypatch.setattr(RayEmbedder, "__call__", lambda self, texts: sent.append(len(texts))
                        or real(self, texts))  # fmt: skip
    on_ray = compare_embed_models(_dataset(), models, index="both", top_k=3, embed_on="ray")
    assert len(sent) == 2 and sent[0] == 6 and sent[1] > 6  # chunks, then their windows
    assert [r.name for r in on_ray.results] == [r.name for r in here.results]
    for got, want in zip(on_ray.results, here.results, strict=True):
        assert got.metrics == pytest.approx(want.metrics, abs=1e-9)
        assert [q.retrieved_ids for q in got.per_query] == [q.retrieved_ids for q in want.per_query]


def test_embed_on_takes_local_or_ray():
    from llama_index_finetune_embed.evaluate import RetrievalEvaluator
    from llama_index_finetune_embed.pipeline import RunConfig

    with pytest.raises(ValueError, match="embed_on must be 'local' or 'ray', got 'gpu'"):
        RetrievalEvaluator(_dataset(), embed_on="gpu")
    assert RunConfig(out="x", embed_on="ray").embed_on == "ray"


def test_without_ray_the_error_says_what_to_install(monkeypatch, tiny_model_path):
    import importlib.util

    from llama_index_finetune_embed import load_embed_model
    from llama_index_finetune_embed.serving import RayEmbedder

    real = importlib.util.find_spec
    no_ray = lambda name, *a: None if name == "ray" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'llama-index-finetune-embed\[ray\]'"):
        RayEmbedder.of(load_embed_model(tiny_model_path))
