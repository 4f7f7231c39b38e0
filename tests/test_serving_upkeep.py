"""A window index under what LlamaIndex users do to an index: delete, refresh, reload, re-insert.

Each check runs the same steps on a plain ``VectorStoreIndex`` (what the user would otherwise
have) where that one behaves, and asks the window index for the same chunks back with nothing of
a deleted document left behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil

import pytest
from conftest import TOY_TEXTS

WINDOW = 32  # tokens: every toy document's chunk is cut into several windows


def _docs(texts: dict[str, str]):
    from llama_index.core import Document

    return [Document(id_=doc_id, text=text, metadata={"title": doc_id}) for doc_id, text in
            texts.items()]  # fmt: skip


def _corpus() -> dict[str, str]:
    """Three documents of several toy sentences each (one chunk each, many windows each)."""
    return {f"doc-{i}": " ".join(TOY_TEXTS[(i + j) % len(TOY_TEXTS)] for j in range(3))
            for i in range(3)}  # fmt: skip


@pytest.fixture
def tiny_embed(tiny_model_path):
    from llama_index_finetune_embed import load_embed_model

    return load_embed_model(tiny_model_path)


def _window_index(embed, docs, **kwargs):
    from llama_index.core.node_parser import SentenceSplitter

    from llama_index_finetune_embed.serving import WindowIndex

    return WindowIndex.from_documents(docs, embed_model=embed, window_tokens=WINDOW,
                                      transformations=[SentenceSplitter(chunk_size=1024)],
                                      **kwargs)  # fmt: skip


def _plain_index(embed, docs):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    return VectorStoreIndex.from_documents(
        docs, embed_model=embed, transformations=[SentenceSplitter(chunk_size=1024)]
    )


def _texts(index, k: int = 50) -> list[str]:
    """Every chunk text the index's retriever returns (sorted), each chunk as often as it comes."""
    return sorted(r.node.get_content() for r in index.as_retriever(similarity_top_k=k)
                  .retrieve("Lyft insurance drivers"))  # fmt: skip


def _vectors(index) -> int:
    return len(index.vector_store.data.embedding_dict)


def _expected_vectors(index, texts: dict[str, str]) -> int:
    from llama_index.core import Document

    return sum(len(index.splitter.window_texts(Document(text=t, metadata={"title": d})))
               for d, t in texts.items())  # fmt: skip


def _nothing_of(index, doc_id: str, text: str) -> None:
    """No chunk, window, vector or docstore entry of ``doc_id`` is left."""
    assert all(text not in t for t in _texts(index))
    assert index.docstore.get_ref_doc_info(doc_id) is None
    leftovers = [n for n in index.docstore.docs.values() if n.ref_doc_id == doc_id]
    assert leftovers == []
    struct_ids = set(index.index_struct.nodes_dict)
    assert struct_ids <= set(index.vector_store.data.embedding_dict)


# -- delete and refresh, default store -------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
def test_delete_ref_doc_removes_every_window_like_a_vector_store_index(tiny_embed, use_async):
    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts))
    plain = _plain_index(tiny_embed, _docs(texts))
    assert _vectors(index) > 2 * len(texts)  # windows, not chunks
    for ix in (index, plain):
        if use_async:
            asyncio.run(ix.adelete_ref_doc("doc-1", delete_from_docstore=True))
        else:
            ix.delete_ref_doc("doc-1", delete_from_docstore=True)
    assert set(_texts(index)) == set(_texts(plain))
    assert len(_texts(index)) == len(_texts(plain)) == 2  # each chunk once
    _nothing_of(index, "doc-1", texts["doc-1"])
    rest = {k: v for k, v in texts.items() if k != "doc-1"}
    assert _vectors(index) == _expected_vectors(index, rest)


def test_delete_ref_doc_keeping_the_docstore_still_drops_every_vector(tiny_embed):
    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts))
    index.delete_ref_doc("doc-0")  # delete_from_docstore=False, LlamaIndex's default
    assert all(texts["doc-0"] not in t for t in _texts(index))
    rest = {k: v for k, v in texts.items() if k != "doc-0"}
    assert _vectors(index) == _expected_vectors(index, rest)
    assert set(index.index_struct.nodes_dict) == set(index.vector_store.data.embedding_dict)
    assert set(index.ref_doc_info) == set(rest)


def test_refresh_ref_docs_serves_the_new_text_and_nothing_of_the_old(tiny_embed):
    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts))
    plain = _plain_index(tiny_embed, _docs(texts))
    changed = {**texts, "doc-2": "Scooters and bikes now run in forty cities. " * 6}
    for ix in (index, plain):
        assert ix.refresh_ref_docs(_docs(changed)) == [False, False, True]
    assert set(_texts(index)) == set(_texts(plain))
    assert any("forty cities" in t for t in _texts(index))
    assert all(texts["doc-2"] != t for t in _texts(index))
    assert _vectors(index) == _expected_vectors(index, changed)
    assert len(index.docstore.docs) == len(set(index.docstore.docs))
    stale = [n for n in index.docstore.docs.values()
             if n.ref_doc_id == "doc-2" and "forty cities" not in n.get_content()]  # fmt: skip
    assert stale == []


def test_refresh_of_an_index_built_from_nodes_replaces_the_documents(tiny_embed):
    from llama_index.core.node_parser import SentenceSplitter

    from llama_index_finetune_embed import build_window_index

    texts = _corpus()
    nodes = SentenceSplitter(chunk_size=1024).get_nodes_from_documents(_docs(texts))
    index = build_window_index(nodes, tiny_embed, window_tokens=WINDOW)
    changed = {**texts, "doc-2": "Scooters and bikes now run in forty cities. " * 6}
    index.refresh_ref_docs(_docs(changed))  # no hashes yet: every document is replaced once
    assert len(_texts(index)) == 3 and any("forty cities" in t for t in _texts(index))
    assert _vectors(index) == _expected_vectors(index, changed)
    assert index.refresh_ref_docs(_docs(changed)) == [False, False, False]


def test_delete_nodes_by_chunk_id_removes_the_chunk_and_its_windows(tiny_embed):
    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts))
    chunk_id = index.docstore.get_ref_doc_info("doc-1").node_ids[0]
    chunk = index.docstore.get_node(chunk_id)
    chunk_id = chunk.metadata.get("window_of", chunk_id)
    index.delete_nodes([chunk_id], delete_from_docstore=True)
    assert all(texts["doc-1"] not in t for t in _texts(index))
    assert chunk_id not in index.docstore.docs
    rest = {k: v for k, v in texts.items() if k != "doc-1"}
    assert _vectors(index) == _expected_vectors(index, rest)
    asyncio.run(index.adelete_nodes([index.docstore.get_ref_doc_info("doc-2").node_ids[0]]))
    assert _vectors(index) < _expected_vectors(index, rest)


def test_a_chunk_inserted_again_under_its_id_replaces_the_old_one(tiny_embed):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import build_window_index

    long = TextNode(id_="c", text=" ".join(TOY_TEXTS))
    index = build_window_index([long], tiny_embed, window_tokens=WINDOW)
    index.insert_nodes([TextNode(id_="c", text="Lyft was founded in 2012.")])
    assert _vectors(index) == 1
    assert _texts(index) == ["Lyft was founded in 2012."]


def test_two_nodes_with_one_id_are_refused(tiny_embed):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import build_window_index

    nodes = [TextNode(id_="same", text=TOY_TEXTS[0]), TextNode(id_="same", text=TOY_TEXTS[1])]
    with pytest.raises(ValueError, match="node id 'same' appears more than once"):
        build_window_index(nodes, tiny_embed)


# -- a vector store that keeps the text (Qdrant local) ---------------------------------------


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_delete_and_refresh_on_qdrant_leave_nothing_behind(tiny_embed, tmp_path):
    from llama_index.core import StorageContext
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = QdrantVectorStore(client=client, collection_name="chunks")
    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts),
                          storage_context=StorageContext.from_defaults(vector_store=store))
    count = lambda: client.count("chunks").count  # noqa: E731
    assert count() == _expected_vectors(index, texts)
    index.delete_ref_doc("doc-0")
    rest = {k: v for k, v in texts.items() if k != "doc-0"}
    assert count() == _expected_vectors(index, rest)
    assert all(n.ref_doc_id != "doc-0" for n in index.docstore.docs.values())
    for round_ in range(3):
        changed = {**rest, "doc-2": f"Round {round_}: scooters in {round_ + 5} cities. " * 5}
        index.refresh_ref_docs(_docs(changed))
    assert count() == _expected_vectors(index, changed)
    assert len([n for n in index.docstore.docs.values() if n.ref_doc_id == "doc-2"]) == 1
    found = _texts(index)
    assert len(found) == 2 and any("Round 2" in t for t in found)
    index.delete_ref_doc("doc-2")  # (Qdrant local has no async client)
    assert count() == _expected_vectors(index, {"doc-1": texts["doc-1"]})
    client.close()


# -- reloading -------------------------------------------------------------------------------


def test_llamaindex_own_loader_gives_back_chunks_never_windows(tiny_embed, tmp_path):
    from llama_index.core import StorageContext, load_index_from_storage

    texts = _corpus()
    index = _window_index(tiny_embed, _docs(texts))
    index.persist(tmp_path / "index")
    loaded = load_index_from_storage(
        StorageContext.from_defaults(persist_dir=str(tmp_path / "index")), embed_model=tiny_embed
    )
    got = loaded.as_retriever(similarity_top_k=3).retrieve("Lyft insurance drivers")
    assert len(got) == 3 and all(r.node.get_content() in texts.values() for r in got)


def test_a_moved_run_folder_loads_the_model_beside_its_index(tiny_model_path, tmp_path):
    from llama_index_finetune_embed import load_embed_model, load_window_index

    run = tmp_path / "run"
    shutil.copytree(tiny_model_path, run / "model")
    index = _window_index(load_embed_model(run / "model"), _docs(_corpus()))
    index.persist(run / "index")
    want = _texts(index, k=3)
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(run, moved)
    loaded = load_window_index(moved / "index")
    assert _texts(loaded, k=3) == want
    assert str(moved / "model") in str(loaded.embed_model.model_name)


def _perturbed_copy(src, dst):
    """The model at ``src`` with one weight changed, saved at ``dst`` (same dimension)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(src), device="cpu")
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    model.save(str(dst))
    return dst


def test_another_model_is_refused_with_one_clear_error(tiny_model_path, tmp_path):
    from llama_index_finetune_embed import load_embed_model, load_window_index

    index = _window_index(load_embed_model(tiny_model_path), _docs(_corpus()))
    index.persist(tmp_path / "index")
    other = load_embed_model(_perturbed_copy(tiny_model_path, tmp_path / "other"))
    with pytest.raises(ValueError, match="built with another embed model.*dimension"):
        load_window_index(tmp_path / "index", embed_model=other)
    config = json.loads((tmp_path / "index" / "window_index.json").read_text())
    assert config["dimension"] == len(other.get_query_embedding("x"))
    # a model replaced at the recorded path is refused too
    shutil.rmtree(tiny_model_path)
    shutil.copytree(tmp_path / "other", tiny_model_path)
    with pytest.raises(ValueError, match="built with another embed model"):
        load_window_index(tmp_path / "index")


def test_a_model_of_another_dimension_is_refused(tiny_embed, tmp_path):
    from llama_index.core.embeddings import MockEmbedding

    from llama_index_finetune_embed import load_window_index

    index = _window_index(tiny_embed, _docs(_corpus()))
    index.persist(tmp_path / "index")
    with pytest.raises(ValueError, match="another embed model.*dimension 7"):
        load_window_index(tmp_path / "index", embed_model=MockEmbedding(embed_dim=7))


@pytest.mark.parametrize(
    ("name", "damage", "error", "match"),
    [
        ("docstore.json", "truncate", ValueError, "docstore.json is damaged"),
        ("index_store.json", "truncate", ValueError, "index_store.json is damaged"),
        ("default__vector_store.json", "truncate", ValueError, "vector_store.json is damaged"),
        ("window_index.json", "truncate", ValueError, "window_index.json is damaged"),
        ("default__vector_store.json", "delete", FileNotFoundError, "vector_store.json is missing"),
        ("docstore.json", "delete", FileNotFoundError, "docstore.json is missing"),
        ("window_index.json", "delete", FileNotFoundError, "window_index.json is missing"),
    ],
)
def test_a_damaged_or_missing_file_is_named(tiny_embed, tmp_path, name, damage, error, match):
    from llama_index_finetune_embed import load_window_index

    index = _window_index(tiny_embed, _docs(_corpus()))
    index.persist(tmp_path / "index")
    path = tmp_path / "index" / name
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(error, match=match):
        load_window_index(tmp_path / "index", embed_model=tiny_embed)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_a_storage_context_without_the_index_says_what_to_pass(tiny_embed, tmp_path):
    from llama_index.core import StorageContext
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from llama_index_finetune_embed import load_window_index

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = QdrantVectorStore(client=client, collection_name="chunks")
    _window_index(tiny_embed, _docs(_corpus()),
                  storage_context=StorageContext.from_defaults(vector_store=store))  # fmt: skip
    with pytest.raises(ValueError, match="holds no index: pass persist_dir="):
        load_window_index(storage_context=StorageContext.from_defaults(vector_store=store),
                          embed_model=tiny_embed)  # fmt: skip
    client.close()


# -- what is embedded and what is asked ------------------------------------------------------


def test_a_long_metadata_header_is_cut_so_windows_read_the_text(tiny_embed, caplog):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import build_window_index

    splitter = build_window_index([], tiny_embed).splitter
    body = " ".join(TOY_TEXTS * 4)
    header = " ".join(f"summary{i} of the questions this chunk answers" for i in range(60))
    node = TextNode(id_="long", text=body, metadata={"summary": header})
    count = lambda t: len(tiny_embed._model.tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert count(header) > splitter.tokens  # the header alone overflows a window
    with caplog.at_level(logging.WARNING):
        index = build_window_index([node], tiny_embed)
    assert "metadata header longer than half" in caplog.text
    windows = splitter.window_texts(node)
    room = splitter.tokens - splitter.tokens // 2
    assert len(windows) <= 2 * count(body) // (room - splitter.overlap) + 1  # bounded
    assert all(count(w) <= splitter.tokens + 2 for w in windows)
    read = " ".join(w.split("\n\n", 1)[1] for w in windows)  # the text after each header
    assert TOY_TEXTS[0].split()[0] in read and TOY_TEXTS[-1].split()[-1].strip(".") in read
    assert len(set(windows)) == len(windows)  # every window embeds different text
    assert _vectors(index) == len(windows)


def test_an_empty_query_is_a_clear_error(tiny_embed):
    index = _window_index(tiny_embed, _docs(_corpus()))
    for query in ("", "   "):
        with pytest.raises(ValueError, match="the query is empty"):
            index.as_retriever(similarity_top_k=2).retrieve(query)
        with pytest.raises(ValueError, match="the query is empty"):
            asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve(query))
