"""build_window_index: windows that fit the model in, the original chunks out, best window first."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOY_TEXTS


def _long_nodes(n: int = 6):
    """Chunks of several toy sentences each (longer than a 16-token window), with metadata."""
    from llama_index.core.schema import TextNode

    return [
        TextNode(
            id_=f"chunk-{i}",
            text=" ".join(TOY_TEXTS[(i + j) % len(TOY_TEXTS)] for j in range(3)),
            metadata={"file_name": f"doc{i}.txt", "page": i},
        )
        for i in range(n)
    ]


@pytest.fixture
def tiny_embed(tiny_model_path):
    from llama_index_finetune_embed import load_embed_model

    return load_embed_model(tiny_model_path)


def _ids(results) -> list[str]:
    return [r.node.node_id for r in results]


# -- the splitter ---------------------------------------------------------------------------


def test_windows_fit_the_model_exactly_and_cover_the_text(tiny_embed):
    from llama_index_finetune_embed.serving import window_splitter

    tokenizer = tiny_embed._model.tokenizer
    tiny_embed._model.max_seq_length = 20  # 18 content tokens + [CLS] and [SEP]
    splitter = window_splitter(tiny_embed, overlap=0)
    assert splitter.tokens == 18 and window_splitter(tiny_embed).overlap == 18 // 4
    text = " ".join(TOY_TEXTS)
    pieces = splitter.split_text(text)
    assert len(pieces) > 3
    assert all(len(tokenizer(p)["input_ids"]) <= 20 for p in pieces)  # specials included
    assert " ".join(pieces).split() == text.split()  # no overlap: every word once, in order
    assert all(not p[0].isspace() and text.find(p) >= 0 for p in pieces)  # cut at word starts


def test_a_document_prompt_and_a_metadata_header_take_their_room(tiny_model_path):

    from llama_index_finetune_embed import load_embed_model
    from llama_index_finetune_embed.serving import window_splitter

    embed = load_embed_model(tiny_model_path, text_instruction="passage of a report: ")
    embed._model.max_seq_length = 64
    splitter = window_splitter(embed)
    prompt_tokens = len(embed._model.tokenizer("passage of a report: ", add_special_tokens=False)
                        ["input_ids"])  # fmt: skip
    assert splitter.tokens == 64 - 2 - prompt_tokens
    node = _long_nodes(1)[0]
    windows = splitter.window_texts(node)
    assert len(windows) > 1
    for embedded in windows:
        assert "file_name: doc0.txt" in embedded and "window_of" not in embedded
        assert len(embed._model.tokenizer("passage of a report: " + embedded)["input_ids"]) <= 64


def test_overlap_repeats_the_end_of_the_previous_window(tiny_embed):
    from llama_index_finetune_embed.serving import window_splitter

    text = " ".join(TOY_TEXTS)
    plain = window_splitter(tiny_embed, window_tokens=16, overlap=0).split_text(text)
    overlapping = window_splitter(tiny_embed, window_tokens=16, overlap=8).split_text(text)
    assert len(overlapping) > len(plain)
    assert overlapping[1].split()[0] in overlapping[0].split()  # starts inside the first
    assert overlapping[-1].split()[-1] == text.split()[-1]
    with pytest.raises(ValueError, match="overlap must be in 0..8"):
        window_splitter(tiny_embed, window_tokens=16, overlap=9)
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        window_splitter(tiny_embed, window_tokens=0)


# -- the index ------------------------------------------------------------------------------


def test_retriever_returns_each_original_chunk_once_with_its_metadata(tiny_embed):
    from llama_index_finetune_embed import build_window_index

    nodes = _long_nodes()
    index = build_window_index(nodes, tiny_embed, window_tokens=16)
    assert len(index.index_struct.nodes_dict) > 2 * len(nodes)  # many windows per chunk
    for k in (1, 3, len(nodes), len(nodes) + 5):
        results = index.as_retriever(similarity_top_k=k).retrieve("When was Lyft founded?")
        assert len(results) == min(k, len(nodes))
        assert len(set(_ids(results))) == len(results)
        by_id = {n.node_id: n for n in nodes}
        for r in results:
            original = by_id[r.node.node_id]
            assert r.node.text == original.text and r.node.metadata == original.metadata
        assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_each_chunk_is_scored_by_its_best_window(tiny_embed):
    """The ranking is exactly max over a chunk's windows (brute force), at every depth."""

    from llama_index_finetune_embed import build_window_index

    nodes = _long_nodes(8)
    index = build_window_index(nodes, tiny_embed, window_tokens=12)
    windows = [(n.node_id, t) for n in nodes for t in index.splitter.window_texts(n)]
    vectors = np.array(tiny_embed.get_text_embedding_batch([t for _, t in windows]))
    for query in ("insurance claims and reserves", "bikes and scooters in cities"):
        q = np.array(tiny_embed.get_query_embedding(query))
        sims = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
        best: dict[str, float] = {}
        for (pid, _), s in zip(windows, sims, strict=True):
            best[pid] = max(best.get(pid, -2.0), float(s))
        expected = sorted(best, key=lambda pid: -best[pid])
        got = index.as_retriever(similarity_top_k=8).retrieve(query)  # needs a second fetch
        assert sorted(_ids(got)) == sorted(expected)
        # chunks share sentences, so two can tie (same window text): compare scores, rank by rank
        assert [r.score for r in got] == pytest.approx([best[i] for i in expected])
        assert all(r.score == pytest.approx(best[r.node.node_id]) for r in got)


def test_short_chunks_give_exactly_a_plain_vector_store_index(tiny_embed, toy_nodes):
    from llama_index.core import VectorStoreIndex

    from llama_index_finetune_embed import build_window_index

    index = build_window_index(toy_nodes, tiny_embed)
    plain = VectorStoreIndex(toy_nodes, embed_model=tiny_embed)
    assert set(index.index_struct.nodes_dict) == {n.node_id for n in toy_nodes}
    for query in ("Who founded Lyft?", "light vehicles"):
        got = index.as_retriever(similarity_top_k=4).retrieve(query)
        want = plain.as_retriever(similarity_top_k=4).retrieve(query)
        assert _ids(got) == _ids(want)
        assert [r.score for r in got] == pytest.approx([r.score for r in want])


def test_query_engine_cites_the_original_chunks(tiny_embed):
    from llama_index.core.llms import MockLLM

    from llama_index_finetune_embed import build_window_index

    nodes = _long_nodes()
    index = build_window_index(nodes, tiny_embed, window_tokens=16)
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query("Who is Uber?")
    assert len(response.source_nodes) == 2
    assert set(_ids(response.source_nodes)) <= {n.node_id for n in nodes}


def test_inserted_nodes_are_cut_into_windows_too(tiny_embed):
    from llama_index_finetune_embed import build_window_index

    nodes = _long_nodes(4)
    index = build_window_index(nodes[:2], tiny_embed, window_tokens=16)
    before = len(index.index_struct.nodes_dict)
    index.insert_nodes(nodes[2:])
    assert len(index.index_struct.nodes_dict) > before + 2
    found = _ids(index.as_retriever(similarity_top_k=4).retrieve("Lyft"))
    assert sorted(found) == sorted(n.node_id for n in nodes)


def test_persisted_and_loaded_back_with_the_same_results(tiny_model_path, tmp_path):
    from llama_index_finetune_embed import build_window_index, load_embed_model, load_window_index

    index = build_window_index(_long_nodes(), load_embed_model(tiny_model_path), window_tokens=16)
    index.persist(tmp_path / "index")
    loaded = load_window_index(tmp_path / "index")  # the model comes back from the recorded path
    assert loaded.splitter.tokens == 16
    for query in ("Toyota autonomous vehicles", "drivers as contractors"):
        want = index.as_retriever(similarity_top_k=3).retrieve(query)
        got = loaded.as_retriever(similarity_top_k=3).retrieve(query)
        assert _ids(got) == _ids(want)
        assert [r.score for r in got] == pytest.approx([r.score for r in want])


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_a_real_embedded_vector_store_persisted_and_reloaded(tiny_embed, tmp_path):
    """Qdrant in local mode (on disk, no server): windows in Qdrant, chunks in the docstore."""
    import uuid

    from llama_index.core import StorageContext
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from llama_index_finetune_embed import build_window_index, load_window_index

    # Qdrant wants UUID point ids; a short chunk is stored under its own id
    nodes = [TextNode(id_=str(uuid.uuid5(uuid.NAMESPACE_URL, n.node_id)), text=n.text,
                      metadata=n.metadata) for n in _long_nodes()]  # fmt: skip
    nodes.append(TextNode(id_=str(uuid.uuid4()), text="Short chunk about Lyft.", metadata={}))
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = QdrantVectorStore(client=client, collection_name="chunks")
    context = StorageContext.from_defaults(vector_store=store)
    index = build_window_index(nodes, tiny_embed, window_tokens=16, storage_context=context)
    index.persist(tmp_path / "meta")
    queries = ("Lyft founded", "revenue grew in 2021", "scooters")
    want = [_ids(index.as_retriever(similarity_top_k=3).retrieve(q)) for q in queries]
    assert all(len(w) == 3 and len(set(w)) == 3 for w in want)
    client.close()

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = QdrantVectorStore(client=client, collection_name="chunks")
    context = StorageContext.from_defaults(vector_store=store, persist_dir=str(tmp_path / "meta"))
    loaded = load_window_index(tmp_path / "meta", storage_context=context, embed_model=tiny_embed)
    got = [_ids(loaded.as_retriever(similarity_top_k=3).retrieve(q)) for q in queries]
    client.close()
    assert got == want
    assert {i for ids in got for i in ids} <= {n.node_id for n in nodes}


def test_an_adapter_model_cuts_windows_with_its_base_tokenizer(tiny_embed):
    import torch
    from llama_index.embeddings.adapter import LinearLayer

    from llama_index_finetune_embed import AdapterEmbedding, build_window_index
    from llama_index_finetune_embed.serving import window_splitter

    dim = len(tiny_embed.get_query_embedding("x"))
    torch.manual_seed(0)
    model = AdapterEmbedding(tiny_embed, LinearLayer(dim, dim, bias=True), dim=dim)
    assert window_splitter(model).tokens == window_splitter(tiny_embed).tokens
    nodes = _long_nodes()
    index = build_window_index(nodes, model, window_tokens=16)
    results = index.as_retriever(similarity_top_k=3).retrieve("insurance")
    assert len(set(_ids(results))) == 3 and set(_ids(results)) <= {n.node_id for n in nodes}


def test_an_api_model_over_http_gets_windows_of_its_token_budget(server):
    """The real OpenAIEmbedding client against the local server's /v1/embeddings."""
    from llama_index.core import Settings
    from llama_index.embeddings.openai import OpenAIEmbedding

    from llama_index_finetune_embed import build_window_index

    model = OpenAIEmbedding(api_base=server.url, api_key="test", max_retries=0)
    nodes = _long_nodes()
    index = build_window_index(nodes, model, window_tokens=20)
    assert server.embedded and all(len(Settings.tokenizer(t)) <= 20 for t in server.embedded)
    assert len(server.embedded) > 2 * len(nodes)
    results = index.as_retriever(similarity_top_k=2).retrieve("Toyota autonomous vehicle research")
    assert len(results) == 2 and set(_ids(results)) <= {n.node_id for n in nodes}
    assert "Toyota" in results[0].node.text


def test_windows_are_embedded_longest_first(tiny_embed):
    """Each embed batch holds texts of about one length (less padding): the index sends them
    sorted by length, longest first."""
    from llama_index.core.embeddings import MockEmbedding

    from llama_index_finetune_embed import build_window_index

    class Recording(MockEmbedding):
        def _get_text_embeddings(self, texts):
            sent.extend(texts)
            return super()._get_text_embeddings(texts)

    sent: list[str] = []
    nodes = _long_nodes(8)
    nodes[3].text = "Short."
    build_window_index(nodes, Recording(embed_dim=8), window_tokens=24)
    assert len(sent) > len(nodes)
    assert [len(t) for t in sent] == sorted((len(t) for t in sent), reverse=True)
