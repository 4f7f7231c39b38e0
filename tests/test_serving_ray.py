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
