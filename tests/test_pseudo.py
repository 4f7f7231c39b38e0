"""Pseudo-queries (inverse cloze, crops) and the sentence splitter; no LLM code imported."""

from __future__ import annotations

import pytest
from llama_index.core.schema import TextNode

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset, generate_pseudo_queries
from llama_index_finetune_embed.generate.pseudo import source_chunk_id, split_sentences, variant_id

TENK = (
    "PART IItem 1.Business.Our mission is to improve people's lives with transportation.In 2012, "
    "we launched our peer-to-peer marketplace for on-demand ridesharing in the U.S. and Canada. "
    "Revenue was $3.2 billion in 2021.The company relies on drivers who are independent "
    "contractors, which is subject to legal challenge. Mr. Green said “we grew.” Riders pay "
    "fees through the Lyft App. Total 1,234 5,678 9,012 3,456."
)


@pytest.fixture
def tenk_nodes():
    return [
        TextNode(id_=f"chunk-{i}", text=TENK.replace("2021", str(2000 + i)), metadata={"page": i})
        for i in range(4)
    ]


# -- sentence splitter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It grew.We won. They lost.", ["It grew.", "We won.", "They lost."]),
        ("Launched in 2012.Today it is big.", ["Launched in 2012.", "Today it is big."]),
        ("Revenue was $1.5 billion. Costs fell.", ["Revenue was $1.5 billion.", "Costs fell."]),
        ("Sold in the U.S. Revenue rose.", ["Sold in the U.S. Revenue rose."]),
        ("See the U.S. market and D.C. office.", ["See the U.S. market and D.C. office."]),
        ("Mr. Green left. Dr. Zimmer stayed.", ["Mr. Green left.", "Dr. Zimmer stayed."]),
        ("He said “yes.” Then left! Why? No.", ["He said “yes.”", "Then left!", "Why?", "No."]),
        ("Item No. 5 applies.", ["Item No. 5 applies."]),
        ("Version 2.5 is out. See e.g. This.", ["Version 2.5 is out.", "See e.g. This."]),
        ("no final period", ["no final period"]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_split_finds_glued_sentences_in_10k_text():
    sentences = split_sentences(TENK)
    assert "Revenue was $3.2 billion in 2021." in sentences
    assert any(s.startswith("The company relies on drivers") for s in sentences)
    assert any(s.startswith("In 2012, we launched") and s.endswith("Canada.") for s in sentences)
    # Every character of the text except whitespace is kept, in order.
    assert "".join("".join(sentences).split()) == "".join(TENK.split())


# -- inverse cloze ----------------------------------------------------------------------------


def test_ict_removes_the_query_sentence_from_its_positive(tenk_nodes):
    ds = generate_pseudo_queries(tenk_nodes, method="ict", per_chunk=2, remove_prob=1.0)
    assert len(ds) == 8
    assert set(ds.query_sources.values()) == {"ict"}
    for qid, query in ds.queries.items():
        (doc_id,) = ds.relevant_docs[qid]
        assert doc_id not in {n.node_id for n in tenk_nodes}  # a variant, not the chunk
        positive = ds.corpus[doc_id]
        assert query not in positive
        assert source_chunk_id(doc_id) in {n.node_id for n in tenk_nodes}
        assert len(query.split()) >= 6
        assert "1,234" not in query  # the number-only "sentence" is never a query


def test_ict_keeps_the_sentence_by_default(tenk_nodes):
    ds = generate_pseudo_queries(tenk_nodes, method="ict", per_chunk=2)
    assert set(ds.corpus) == {n.node_id for n in tenk_nodes}  # no variant positives
    for qid, query in ds.queries.items():
        (doc_id,) = ds.relevant_docs[qid]
        assert doc_id in {n.node_id for n in tenk_nodes}  # the chunk itself is the positive
        assert query in " ".join(ds.corpus[doc_id].split())


def test_corpus_keeps_every_node_as_rendered(tenk_nodes, toy_nodes):
    ds = generate_pseudo_queries(tenk_nodes + toy_nodes, method="ict", remove_prob=1.0)
    for node in tenk_nodes + toy_nodes:
        assert ds.corpus[node.node_id] == node.get_content(metadata_mode="embed")
    # metadata is rendered into variant positives too ("embed" mode shows it)
    variants = [text for cid, text in ds.corpus.items() if source_chunk_id(cid) != cid]
    assert variants and all(text.startswith("page: ") for text in variants)
    # single-sentence toy chunks give no ICT pairs (nothing would be left as the positive)
    assert not any(source_chunk_id(d[0]).startswith("node-") for d in ds.relevant_docs.values())


def test_pseudo_is_deterministic_and_seeded(tenk_nodes):
    a = generate_pseudo_queries(tenk_nodes, per_chunk=2, seed=1)
    b = generate_pseudo_queries(tenk_nodes, per_chunk=2, seed=1)
    c = generate_pseudo_queries(tenk_nodes, per_chunk=2, seed=2)
    assert a == b
    assert a.queries != c.queries or a.relevant_docs != c.relevant_docs


def test_ict_merges_and_round_trips(tenk_nodes, tmp_path):
    ict = generate_pseudo_queries(tenk_nodes, method="ict")
    crop = generate_pseudo_queries(tenk_nodes, method="crop")
    llm = EmbeddingQAFinetuneDataset.from_nodes(tenk_nodes, {"chunk-0": ["Who is Mr. Green?"]})
    merged = llm.merge(ict, crop)
    assert len(merged) == len(ict) + len(crop) + 1
    assert set(merged.query_sources.values()) == {"ict", "crop"}
    merged.save_json(tmp_path / "d.json")
    assert EmbeddingQAFinetuneDataset.from_json(tmp_path / "d.json") == merged


# -- crops ------------------------------------------------------------------------------------


def test_crop_query_and_positive_are_spans_of_the_chunk(tenk_nodes):
    ds = generate_pseudo_queries(tenk_nodes, method="crop", per_chunk=3, min_words=5)
    bodies = {n.node_id: " ".join(n.get_content().split()) for n in tenk_nodes}
    assert len(ds) == 12
    for qid, query in ds.queries.items():
        body = bodies[source_chunk_id(qid)]
        positive = ds.corpus[ds.relevant_docs[qid][0]].split("\n\n", 1)[-1]  # no metadata
        assert 5 <= len(query.split()) <= 64
        assert query in body
        assert positive in body and len(positive.split()) >= len(body.split()) // 2


def test_short_chunks_give_no_crops():
    ds = generate_pseudo_queries([TextNode(id_="a", text="too short")], method="crop")
    assert len(ds) == 0 and ds.corpus == {"a": "too short"}


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "cloze"}, "method must be one of"),
        ({"per_chunk": 0}, "per_chunk"),
        ({"remove_prob": 1.5}, "remove_prob"),
        ({"min_words": 10, "max_query_words": 5}, "min_words"),
    ],
)
def test_bad_options_are_named(tenk_nodes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_pseudo_queries(tenk_nodes, **kwargs)


def test_empty_nodes_is_an_error():
    with pytest.raises(ValueError, match="nodes is empty"):
        generate_pseudo_queries([])


def test_variant_ids_are_stable_and_reversible():
    vid = variant_id("doc#1", "crop", "some text")
    assert vid == variant_id("doc#1", "crop", "some text")
    assert vid != variant_id("doc#1", "crop", "other text")
    assert source_chunk_id(vid) == "doc#1"
    assert source_chunk_id("doc#1") == "doc#1"


def test_pseudo_imports_no_torch():
    """Importing pseudo-queries (and with them the generate package) loads no torch, no
    transformers; that pseudo.py itself reaches no LLM code is an import-linter contract."""
    from _imports import modules_loaded_by

    loaded = modules_loaded_by("llama_index_finetune_embed.generate.pseudo")
    assert "llama_index_finetune_embed.generate.pseudo" in loaded
    assert not {"torch", "transformers", "sentence_transformers"} & loaded
