from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset


def _toy(n_chunks: int = 10, per_chunk: int = 2) -> EmbeddingQAFinetuneDataset:
    corpus = {f"c{i}": f"chunk text number {i}" for i in range(n_chunks)}
    queries, relevant = {}, {}
    for i in range(n_chunks):
        for j in range(per_chunk):
            queries[f"q{i}-{j}"] = f"question {j} about chunk {i}?"
            relevant[f"q{i}-{j}"] = [f"c{i}"]
    return EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def _write(tmp_path: Path, data, name: str = "ds.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- seed files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,n_queries,n_chunks", [("train", 668, 334), ("val", 790, 395)])
def test_seed_files_load_and_round_trip(seed_dir, tmp_path, name, n_queries, n_chunks):
    ds = EmbeddingQAFinetuneDataset.from_json(seed_dir / f"{name}_dataset.json")
    assert (len(ds), len(ds.corpus)) == (n_queries, n_chunks)
    out = tmp_path / "copy.json"
    ds.save_json(out)
    again = EmbeddingQAFinetuneDataset.from_json(out)
    assert again == ds
    raw = json.loads(out.read_text())
    original = json.loads((seed_dir / f"{name}_dataset.json").read_text())
    for key in ("queries", "corpus", "relevant_docs"):
        assert raw[key] == original[key]


REFERENCE_FILE = Path(__file__).parent / "data" / "llama_index_finetuning_dataset.json"


def test_reads_a_file_llama_index_finetuning_wrote(tmp_path):
    # Written by llama-index-core 0.14.20's EmbeddingQAFinetuneDataset.save_json (the class that
    # llama-index-finetuning 0.4.2 re-exports); see tests/data/README.md.
    ds = EmbeddingQAFinetuneDataset.from_json(REFERENCE_FILE)
    assert (len(ds), len(ds.corpus), ds.mode) == (4, 2, "text")
    ds.save_json(tmp_path / "ours.json")
    theirs = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    ours = json.loads((tmp_path / "ours.json").read_text(encoding="utf-8"))
    # their reader is ``cls(**json.load(f))`` (pydantic, extra keys ignored): the fields it
    # knows must come back equal, and nothing it requires may be missing
    assert {k: ours[k] for k in theirs} == theirs


def test_written_file_loads_in_llama_index_finetuning(tmp_path):
    finetuning = pytest.importorskip("llama_index.finetuning")
    ds = _toy()
    ds.save_json(tmp_path / "ds.json")
    theirs = finetuning.EmbeddingQAFinetuneDataset.from_json(str(tmp_path / "ds.json"))
    assert theirs.queries == ds.queries and theirs.relevant_docs == ds.relevant_docs


def test_written_file_is_plain_llama_index_layout(tmp_path):
    ds = _toy()
    ds.save_json(tmp_path / "ds.json")
    raw = json.loads((tmp_path / "ds.json").read_text())
    assert {"queries", "corpus", "relevant_docs", "mode"} <= set(raw)
    assert raw["mode"] == "text"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "ds.json"
    _toy().save_json(path)
    _toy(3).save_json(path)
    assert len(EmbeddingQAFinetuneDataset.from_json(path).corpus) == 3
    assert [p.name for p in path.parent.iterdir()] == ["ds.json"]


# -- validation: one clear error each ---------------------------------------------------------


def test_missing_relevant_doc_is_named():
    with pytest.raises(ValueError, match=r"relevant doc 'nope' of query 'q1' is not in the corpus"):
        EmbeddingQAFinetuneDataset(
            queries={"q1": "?"}, corpus={"c1": "t"}, relevant_docs={"q1": ["nope"]}
        )


@pytest.mark.parametrize("relevant", [{"q1": []}, {}])
def test_query_without_relevant_docs(relevant):
    with pytest.raises(ValueError, match=r"query 'q1' has no relevant docs"):
        EmbeddingQAFinetuneDataset(queries={"q1": "?"}, corpus={"c1": "t"}, relevant_docs=relevant)


def test_empty_corpus():
    with pytest.raises(ValueError, match="corpus is empty"):
        EmbeddingQAFinetuneDataset(queries={}, corpus={}, relevant_docs={})


@pytest.mark.parametrize(
    "field,data,match",
    [
        ("queries", {"q1": 3}, r"queries\['q1'\] must be a string, got int"),
        ("corpus", {"c1": None}, r"corpus\['c1'\] must be a string, got NoneType"),
        ("relevant_docs", {"q1": "c1"}, r"relevant_docs\['q1'\] must be a list"),
    ],
)
def test_non_string_text(field, data, match):
    good = {"queries": {"q1": "?"}, "corpus": {"c1": "t"}, "relevant_docs": {"q1": ["c1"]}}
    good[field] = data
    with pytest.raises(ValueError, match=match):
        EmbeddingQAFinetuneDataset(**good)


def test_malformed_json_names_file_and_position(tmp_path):
    path = _write(tmp_path, '{"queries": {"q1": "?"},\n "corpus": }')
    with pytest.raises(ValueError, match=r"ds\.json: not valid JSON \(.* line 2, column"):
        EmbeddingQAFinetuneDataset.from_json(path)


def test_json_missing_key_names_file(tmp_path):
    path = _write(tmp_path, {"queries": {}, "corpus": {"c": "t"}})
    with pytest.raises(ValueError, match=r"ds\.json: missing key\(s\) \['relevant_docs'\]"):
        EmbeddingQAFinetuneDataset.from_json(path)


def test_json_validation_error_names_file(tmp_path):
    path = _write(tmp_path, {"queries": {"q": "?"}, "corpus": {"c": 1}, "relevant_docs": {}})
    with pytest.raises(ValueError, match=r"ds\.json: corpus\['c'\] must be a string") as err:
        EmbeddingQAFinetuneDataset.from_json(path)
    assert "\n" not in str(err.value)


def test_json_not_an_object(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        EmbeddingQAFinetuneDataset.from_json(_write(tmp_path, [1, 2]))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="dataset file not found"):
        EmbeddingQAFinetuneDataset.from_json("/nonexistent/ds.json")


# -- helpers ---------------------------------------------------------------------------------


def test_len_query_docid_pairs_and_pydantic_iteration():
    ds = _toy(3, 2)
    assert len(ds) == 6
    first_qid = next(iter(ds.queries))
    assert ds.query_docid_pairs[0] == ("question 0 about chunk 0?", ds.relevant_docs[first_qid])
    assert len(ds.query_docid_pairs) == 6 and len(list(ds.pairs())) == 6
    # as llama-index-core's class: iteration is pydantic's, so dict() gives the fields
    assert dict(ds)["queries"] == ds.queries and set(dict(ds)) == set(type(ds).model_fields)


def test_core_and_reference_names_are_importable_aliases():
    from llama_index_finetune_embed import (
        EmbeddingQAFinetuneDataset,
        LabelledQADataset,
        generate_qa_embedding_pairs,
        generate_question_context_pairs,
    )

    assert LabelledQADataset is EmbeddingQAFinetuneDataset
    assert generate_question_context_pairs is generate_qa_embedding_pairs


def test_split_is_by_chunk_and_deterministic():
    ds = _toy(20, 3)
    train, val = ds.split(0.25, seed=1)
    assert len(val.corpus) == 5 and len(train.corpus) == 15
    assert set(train.corpus).isdisjoint(val.corpus)
    assert len(train) + len(val) == len(ds)
    for part in (train, val):
        for docs in part.relevant_docs.values():
            assert set(docs) <= set(part.corpus)
    again_train, again_val = ds.split(0.25, seed=1)
    assert again_val == val and again_train == train
    assert ds.split(0.25, seed=2)[1].corpus != val.corpus


def test_split_keeps_chunks_linked_by_one_query_together():
    ds = _toy(10, 1)
    ds.relevant_docs["q0-0"] = ["c0", "c1", "c2"]
    for seed in range(10):
        train, val = ds.split(0.3, seed=seed)
        side = train if "c0" in train.corpus else val
        assert {"c1", "c2"} <= set(side.corpus)


def test_split_rejects_bad_ratio_and_single_group():
    with pytest.raises(ValueError, match="val_ratio"):
        _toy().split(1.5)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        _toy(1, 3).split(0.5)


def test_from_nodes_uses_node_ids_and_stable_query_ids(toy_nodes):
    questions = {"node-0": ["When was Lyft founded?"], "node-1": ["What does Uber run?"]}
    ds = EmbeddingQAFinetuneDataset.from_nodes(
        toy_nodes, questions, query_sources={"node-0": "llm"}
    )
    assert set(ds.corpus) == {n.node_id for n in toy_nodes}
    assert ds.metadata_mode == "embed"
    assert "file_name: doc0.txt" in ds.corpus["node-0"]  # what VectorStoreIndex embeds
    again = EmbeddingQAFinetuneDataset.from_nodes(toy_nodes, questions)
    assert list(again.queries) == list(ds.queries)
    assert sorted(ds.query_sources.values()) == ["llm"]
    plain = EmbeddingQAFinetuneDataset.from_nodes(toy_nodes, questions, metadata_mode="none")
    assert plain.corpus["node-0"] == toy_nodes[0].text


def test_from_nodes_rejects_unknown_node(toy_nodes):
    with pytest.raises(ValueError, match="node 'ghost'"):
        EmbeddingQAFinetuneDataset.from_nodes(toy_nodes, {"ghost": ["?"]})


def test_from_pairs_dedups_chunks():
    ds = EmbeddingQAFinetuneDataset.from_pairs(
        [("a?", "x"), ("b?", "x"), ("c?", "y")], source="ict"
    )
    assert len(ds) == 3 and len(ds.corpus) == 2
    assert set(ds.query_sources.values()) == {"ict"}


def test_merge_combines_and_checks_ids():
    a = EmbeddingQAFinetuneDataset.from_pairs([("a?", "x")], source="llm")
    b = EmbeddingQAFinetuneDataset.from_pairs([("b?", "x"), ("c?", "y")], source="ict")
    both = a.merge(b)
    assert len(both) == 3 and len(both.corpus) == 2
    assert sorted(both.query_sources.values()) == ["ict", "ict", "llm"]
    clash = b.model_copy(update={"corpus": {k: "other" for k in b.corpus}})
    with pytest.raises(ValueError, match="different texts"):
        a.merge(clash)


def test_coerce_accepts_lookalikes_and_names_the_argument(tmp_path):
    from types import SimpleNamespace

    other = SimpleNamespace(queries={"q": "x?"}, corpus={"c": "t"}, relevant_docs={"q": ["c"]})
    ds = EmbeddingQAFinetuneDataset.coerce(other, "train_dataset")
    assert isinstance(ds, EmbeddingQAFinetuneDataset) and ds.relevant_docs == {"q": ["c"]}
    ds.save_json(tmp_path / "d.json")
    assert EmbeddingQAFinetuneDataset.coerce(tmp_path / "d.json", allow_path=True) == ds
    with pytest.raises(TypeError, match="val_dataset must be an EmbeddingQAFinetuneDataset"):
        EmbeddingQAFinetuneDataset.coerce(tmp_path / "d.json", "val_dataset")
    other.relevant_docs["q"] = ["gone"]
    with pytest.raises(ValueError, match="val_dataset has inconsistent ids.*'gone'"):
        EmbeddingQAFinetuneDataset.coerce(other, "val_dataset")
