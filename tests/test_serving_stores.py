"""serving.stores and serving.writing against real stores: PostgreSQL + pgvector (a server the
pgserver wheel starts), Qdrant in local mode, Chroma's PersistentClient, a persist dir."""

from __future__ import annotations

import hashlib
import json

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter

from llama_index_finetune_embed import build_window_index, load_embed_model, load_window_index
from llama_index_finetune_embed.serving import (
    index_nodes,
    open_store,
    parse_store_url,
    stored_vectors,
    write_window_index,
)

WORDS = ("revenue drivers riders growth loss insurance city scooter platform regulation market "
         "share trips pandemic autonomous freight delivery tips safety pricing").split()


def _docs(n: int = 8) -> list[Document]:
    import random

    rng = random.Random(0)
    return [
        Document(
            text=" ".join(rng.choice(WORDS) for _ in range(60 + 50 * (i % 3))) + ".",
            metadata={"file_name": f"f{i}.txt", "page": i, "nested": "x"},
            excluded_embed_metadata_keys=["page"],
            excluded_llm_metadata_keys=["nested"],
        )
        for i in range(n)
    ]


@pytest.fixture
def tiny_embed(tiny_model_path):
    return load_embed_model(str(tiny_model_path))


@pytest.fixture
def nodes():
    """Chunks as LlamaIndex's SentenceSplitter makes them (random uuid ids, relationships)."""
    return SentenceSplitter(chunk_size=64, chunk_overlap=8).get_nodes_from_documents(_docs())


def _store_urls(tmp_path, pg_url, name: str) -> dict[str, str]:
    return {
        "postgres": pg_url(name),
        "qdrant": f"qdrant:{tmp_path / 'qdrant'}?collection={name}",
        "chroma": f"chroma:{tmp_path / 'chroma'}?collection={name}",
    }


def _cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _fields(node) -> tuple:
    return (node.node_id, node.get_content(), node.metadata, node.relationships,
            node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys,
            node.start_char_idx, node.end_char_idx)  # fmt: skip


# -- URLs -------------------------------------------------------------------------------------


def test_store_urls_parse_and_never_keep_a_password():
    url = parse_store_url("postgresql://me:s3cret@db.local:5433/rag?table=chunks")
    assert (url.kind, url.name, url.location, url.database) == ("postgres", "chunks",
                                                                "db.local:5433", "rag")
    assert url.redacted == "postgresql://me@db.local:5433/rag?table=chunks"
    assert "s3cret" not in repr(url)
    sock = parse_store_url("postgresql://postgres@/postgres?host=/tmp/pg&table=t1&hnsw=off")
    assert sock.socket_dir == "/tmp/pg" and not sock.hnsw and sock.location == ""
    assert parse_store_url(sock.redacted) == sock
    local = parse_store_url("qdrant:./data?collection=c1")
    assert local.kind == "qdrant" and local.is_local and local.name == "c1"
    remote = parse_store_url("qdrant+http://localhost:6333?collection=c1")
    assert not remote.is_local and remote.redacted == "qdrant+http://localhost:6333?collection=c1"
    assert parse_store_url("chroma:/x/y?collection=abc").location == "/x/y"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://me:pw@h:5432/db", "no ?table=NAME"),
        ("postgresql://me@h:5432?table=t", "no database"),
        ("postgresql://me@h:5432/db?table=drop table", "letters, digits and _ only"),
        ("qdrant:?collection=c", "no folder"),
        ("chroma:/x?collection=ab", "3-512 characters"),
        ("mongodb://h/db", "unknown kind 'mongodb'"),
        ("postgresql://me@h/db?table=t&sslmode=x", "unknown option(s) sslmode"),
    ],
)
def test_bad_store_urls_say_what_is_wrong(url, says):
    with pytest.raises(ValueError, match="Forms: postgresql://") as err:
        parse_store_url(url)
    assert says in str(err.value) and "pw" not in str(err.value)


# -- reading an existing index ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgres", "qdrant", "chroma"])
def test_index_nodes_reads_a_llamaindex_store_exactly(kind, nodes, tiny_embed, tmp_path, pg_url):
    """A VectorStoreIndex built the way LlamaIndex's docs build one; its nodes come back whole."""
    url = _store_urls(tmp_path, pg_url, "src")[kind]
    store = open_store(url, write=True, dim=32)
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(
        vector_store=store.vector_store), embed_model=tiny_embed)  # fmt: skip
    back = index_nodes(url)
    assert [_fields(n) for n in back] == [_fields(n) for n in sorted(nodes, key=lambda n: n.id_)]
    assert all(n.embedding is None for n in back)
    vectors = stored_vectors(url, [n.node_id for n in nodes[:3]])
    fresh = tiny_embed.get_text_embedding_batch([n.get_content("embed") for n in nodes[:3]])
    for node, vector in zip(nodes[:3], fresh, strict=True):  # Qdrant stores them normalized
        assert _cosine(vectors[node.node_id][0], vector) > 0.9999
    assert index_nodes(store.vector_store) == back  # the vector store object itself


def test_index_nodes_of_a_persist_dir_and_of_a_window_index(nodes, tiny_embed, tmp_path):
    plain = VectorStoreIndex(nodes, embed_model=tiny_embed)
    plain.storage_context.persist(str(tmp_path / "plain"))
    want = [_fields(n) for n in sorted(nodes, key=lambda n: n.id_)]
    assert [_fields(n) for n in index_nodes(tmp_path / "plain")] == want
    assert [_fields(n) for n in index_nodes(plain)] == want
    # ours: long chunks stored as windows; every chunk comes back once, as itself
    long_nodes = SentenceSplitter(chunk_size=400, chunk_overlap=0).get_nodes_from_documents(_docs())
    index = build_window_index(long_nodes, tiny_embed, window_tokens=24)
    assert len(index.index_struct.nodes_dict) > len(long_nodes)  # windows
    index.persist(tmp_path / "ours")
    assert [_fields(n) for n in index_nodes(tmp_path / "ours")] == [
        _fields(n) for n in sorted(long_nodes, key=lambda n: n.id_)
    ]
    vectors = stored_vectors(tmp_path / "ours", [n.node_id for n in long_nodes])
    assert sum(len(v) for v in vectors.values()) == len(index.index_struct.nodes_dict)


def test_index_nodes_errors(tmp_path, pg_url):
    with pytest.raises(FileNotFoundError, match="is not a LlamaIndex persist dir"):
        index_nodes(tmp_path)
    with pytest.raises(ValueError, match="no such table"):
        index_nodes(pg_url("missing"))
    with pytest.raises(ValueError, match="no such collection"):
        index_nodes(f"chroma:{tmp_path / 'c'}?collection=missing")
    with pytest.raises(TypeError, match="expected a store URL"):
        index_nodes(42)


# -- writing a window index --------------------------------------------------------------------


def _ranked(index, questions, k=10):
    retriever = index.as_retriever(similarity_top_k=k)
    return [[hit.node.node_id for hit in retriever.retrieve(q)] for q in questions]


def _questions(n=25):
    import random

    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(n)]


@pytest.mark.parametrize("kind", ["postgres", "postgres+hnsw", "qdrant", "chroma"])
def test_written_index_retrieves_as_the_json_index(kind, tiny_embed, tmp_path, pg_url):
    long_nodes = SentenceSplitter(chunk_size=400, chunk_overlap=0).get_nodes_from_documents(_docs())
    reference = build_window_index(long_nodes, tiny_embed, window_tokens=24)
    urls = _store_urls(tmp_path, pg_url, "ftx")
    url = {"postgres": pg_url("ftx", hnsw="off"), "postgres+hnsw": urls["postgres"]}.get(
        kind, urls.get(kind)
    )
    stats = write_window_index(iter(long_nodes), tiny_embed, url, tmp_path / "index",
                               window_tokens=24, batch_size=3)  # fmt: skip
    assert stats.entries == len(reference.index_struct.nodes_dict) == stats.written
    assert stats.chunks == len(long_nodes)
    index = load_window_index(tmp_path / "index")
    config = json.loads((tmp_path / "index" / "window_index.json").read_text())
    assert config["vector_store"] == parse_store_url(url).redacted
    want, got = _ranked(reference, _questions()), _ranked(index, _questions())
    if kind == "postgres+hnsw":  # approximate search: recall@10 against exact
        recall = sum(len(set(a) & set(b)) for a, b in zip(want, got, strict=True))
        assert recall / sum(len(a) for a in want) >= 0.99
    else:
        assert got == want  # exact search: same chunks, same order
    # a rerun writes nothing; another folder may not write into it
    again = write_window_index(long_nodes, tiny_embed, url, tmp_path / "index", window_tokens=24)
    assert again.written == 0 and again.entries == stats.entries
    assert open_store(url).count() == stats.entries
    with pytest.raises(ValueError, match="exists and was not written from"):
        write_window_index(long_nodes, tiny_embed, url, tmp_path / "other", window_tokens=24)


def _pg_checksum(url: str) -> tuple[int, str]:
    rows = sorted(
        (n.node_id, n.get_content(), json.dumps(n.metadata, sort_keys=True), tuple(n.embedding))
        for page in open_store(url).pages()
        for n in page
    )
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def test_an_interrupted_write_resumes_without_duplicates(tiny_embed, tmp_path, pg_url, monkeypatch):
    """The write dies in the middle of a batch (its transaction never commits); the rerun adds
    exactly what is missing."""
    from llama_index.vector_stores.postgres import PGVectorStore

    long_nodes = SentenceSplitter(chunk_size=400, chunk_overlap=0).get_nodes_from_documents(_docs())
    url, real_add, real_row = pg_url("resume"), PGVectorStore.add, PGVectorStore._node_to_table_row
    adds, rows = [], []

    def add(self, nodes, **kwargs):
        adds.append(len(nodes))
        return real_add(self, nodes, **kwargs)

    def row(self, node):
        rows.append(node.node_id)
        if len(adds) == 3 and len(rows) > sum(adds[:2]) + 1:
            raise KeyboardInterrupt  # what a kill leaves: batches 1-2 committed, 3 half sent
        return real_row(self, node)

    monkeypatch.setattr(PGVectorStore, "add", add)
    monkeypatch.setattr(PGVectorStore, "_node_to_table_row", row)
    with pytest.raises(KeyboardInterrupt):
        write_window_index(long_nodes, tiny_embed, url, tmp_path / "index", window_tokens=24,
                           batch_size=2)  # fmt: skip
    partial = open_store(url).count()
    assert partial == sum(adds[:2])  # the half-sent batch left nothing
    monkeypatch.setattr(PGVectorStore, "add", real_add)
    monkeypatch.setattr(PGVectorStore, "_node_to_table_row", real_row)
    stats = write_window_index(long_nodes, tiny_embed, url, tmp_path / "index",
                               window_tokens=24, batch_size=2)  # fmt: skip
    assert stats.written == stats.entries - partial
    count, _ = _pg_checksum(url)
    ids = [n.node_id for page in open_store(url).pages() for n in page]
    assert count == stats.entries == len(set(ids))


@pytest.mark.parametrize("kind", ["postgres", "qdrant", "chroma"])
def test_a_written_index_deletes_every_window_of_a_chunk(kind, tiny_embed, tmp_path, pg_url):
    """Its docstore is empty (the store keeps the chunks): the windows are found in the store."""
    long_nodes = SentenceSplitter(chunk_size=400, chunk_overlap=0).get_nodes_from_documents(_docs())
    url = _store_urls(tmp_path, pg_url, "del")[kind]
    stats = write_window_index(long_nodes, tiny_embed, url, tmp_path / "index", window_tokens=24)
    index = load_window_index(tmp_path / "index")
    victim = max(long_nodes, key=lambda n: len(n.get_content()))
    windows = stored_vectors(url, [victim.node_id])[victim.node_id]
    assert len(windows) > 1
    index.delete_nodes([victim.node_id])
    assert victim.node_id not in stored_vectors(url, [victim.node_id])
    assert open_store(url).count() == stats.entries - len(windows)
    hits = index.as_retriever(similarity_top_k=20).retrieve(victim.get_content()[:200])
    assert victim.node_id not in {h.node.node_id for h in hits}


@pytest.mark.parametrize("kind", ["postgres", "qdrant", "chroma"])
def test_text_once_stores_a_chunk_text_with_its_first_window_only(
    kind, tiny_embed, tmp_path, pg_url
):
    """``&text=once``: smaller, and this package's readers still get whole chunks back; what a
    plain ``from_vector_store`` retriever returns is said in writing.py's docstring."""
    long_nodes = SentenceSplitter(chunk_size=400, chunk_overlap=0).get_nodes_from_documents(_docs())
    reference = build_window_index(long_nodes, tiny_embed, window_tokens=24)
    url = _store_urls(tmp_path, pg_url, "once")[kind] + "&text=once"
    assert parse_store_url(url).text_once and parse_store_url(url).redacted.endswith("&text=once")
    write_window_index(long_nodes, tiny_embed, url, tmp_path / "index", window_tokens=24)
    stored = [n for page in open_store(url).pages() for n in page]
    with_text = [n for n in stored if n.get_content()]
    assert len(with_text) == len(long_nodes) < len(stored)  # one copy of each chunk's text
    index = load_window_index(tmp_path / "index")
    retriever, want = index.as_retriever(similarity_top_k=10), reference.as_retriever(
        similarity_top_k=10)  # fmt: skip
    for question in _questions(10):
        got = retriever.retrieve(question)
        assert [h.node.node_id for h in got] == [h.node.node_id for h in want.retrieve(question)]
        by_id = {n.node_id: n.get_content() for n in long_nodes}
        assert all(h.node.get_content() == by_id[h.node.node_id] for h in got)  # whole chunks
    assert [_fields(n) for n in index_nodes(url)] == [
        _fields(n) for n in sorted(long_nodes, key=lambda n: n.id_)
    ]
    # LlamaIndex's own reader: the first window's hit has the text, the others an empty one
    plain = VectorStoreIndex.from_vector_store(open_store(url).vector_store, embed_model=tiny_embed)
    hits = plain.as_retriever(similarity_top_k=len(stored)).retrieve(_questions(1)[0])
    assert any(h.node.get_content() for h in hits) and any(not h.node.get_content() for h in hits)


def test_index_nodes_of_a_docstore_alone_and_of_an_ingestion_pipelines_docstore(nodes, tmp_path):
    """A persist dir with a docstore and nothing else (no index store, no vectors) is read; an
    IngestionPipeline's own docstore keeps its input documents: one clear error."""
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore

    docstore = SimpleDocumentStore()
    docstore.add_documents(nodes)
    docstore.persist(str(tmp_path / "nodes" / "docstore.json"))
    back = index_nodes(tmp_path / "nodes")
    assert [_fields(n) for n in back] == [_fields(n) for n in sorted(nodes, key=lambda n: n.id_)]
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=8)],
                                 docstore=SimpleDocumentStore())  # fmt: skip
    pipeline.run(documents=_docs(3))
    pipeline.persist(str(tmp_path / "pipeline"))
    with pytest.raises(ValueError, match="holds 3 documents and no nodes"):
        index_nodes(tmp_path / "pipeline")
