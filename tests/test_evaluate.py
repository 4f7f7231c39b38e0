"""Evaluation: fast path == RetrieverEvaluator, hand-computed metrics, bootstrap, clear errors."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TOY_TEXTS

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.evaluate import (
    ComparisonTable,
    DatasetEmbeddings,
    RetrievalEvaluator,
    compare_embed_models,
    embed_dataset,
    evaluate_embeddings,
    evaluate_retrieval,
    ir_metrics,
)
from llama_index_finetune_embed.evaluate.metrics import metric_names, mrr_at_k

LLAMA = ("hit_rate", "mrr", "precision", "recall", "ap", "ndcg")

TOY_QUESTIONS = [
    ("When was Lyft founded?", [0]),
    ("What platform does Uber operate?", [1]),
    ("How did revenue change in 2021?", [2]),
    ("Are drivers independent contractors?", [3]),
    ("What covers auto liability claims?", [4]),
    ("Where are bikes and scooters offered?", [5]),
    ("Who bought the autonomous vehicle research?", [6]),
    ("What are the risk factors?", [7]),
    ("How do riders connect with drivers?", [0, 3]),
    ("What happened with ride volume after the lockdowns?", [2]),
    ("Which legal challenge concerns drivers?", [3, 7]),
    ("What did Toyota buy in 2021?", [6, 2]),
]


@pytest.fixture
def toy_dataset(toy_nodes) -> EmbeddingQAFinetuneDataset:
    corpus = {n.node_id: n.text for n in toy_nodes}
    ids = list(corpus)
    return EmbeddingQAFinetuneDataset(
        queries={f"q{i}": q for i, (q, _) in enumerate(TOY_QUESTIONS)},
        corpus=corpus,
        relevant_docs={f"q{i}": [ids[j] for j in rel] for i, (_, rel) in enumerate(TOY_QUESTIONS)},
    )


@pytest.fixture(params=["", "query: "], ids=["no-prompt", "query-prompt"])
def tiny_embed(request, tiny_model_path):
    """The tiny model as a LlamaIndex embed model, with and without a saved query prompt."""
    from llama_index_finetune_embed.embeddings import load_embed_model

    config = tiny_model_path / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["prompts"] = {"query": request.param, "document": ""}
    config.write_text(json.dumps(data))
    model = load_embed_model(tiny_model_path)
    assert model.query_instruction == request.param
    return model


def _hand_dataset() -> tuple[EmbeddingQAFinetuneDataset, DatasetEmbeddings]:
    corpus = {"a": "A", "b": "B", "c": "C", "d": "D"}
    c_emb = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.08, 0.06]])  # d: short, same angle
    queries = {"q1": "one", "q2": "two", "q3": "three"}
    q_emb = np.array([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.2]])
    # cosine (not dot) rankings: q1 a,d,b,c   q2 b,d,{a,c tied at 0 -> a first},c   q3 c,b,d,a
    relevant = {"q1": ["d"], "q2": ["c"], "q3": ["c", "b"]}
    ds = EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)
    return ds, DatasetEmbeddings(q_emb, c_emb)


def test_hand_computed_metrics_on_a_toy_case():
    ds, emb = _hand_dataset()
    result = evaluate_embeddings(ds, emb, top_k=2, name="toy")
    rows = {r.query_id: r for r in result.per_query}
    assert rows["q1"].retrieved_ids == ["a", "d"]
    assert rows["q2"].retrieved_ids == ["b", "d"]
    assert rows["q2"].first_relevant_rank == 4  # the a/c tie is broken by ascending id
    assert rows["q3"].retrieved_ids == ["c", "b"]
    g = 1 / math.log2(3)
    expected = {
        "hit_rate": 2 / 3,
        "mrr": (1 / 2 + 0 + 1) / 3,
        "precision": (1 / 2 + 0 + 1) / 3,
        "recall": 2 / 3,
        "ap": (1 / 2 + 0 + 1) / 3,
        "ndcg": (g + 0 + 1) / 3,
        "accuracy@1": 1 / 3,
        "accuracy@3": 2 / 3,
        "accuracy@5": 1.0,
        "mrr@10": (1 / 2 + 1 / 4 + 1) / 3,
        "ndcg@10": (g + 1 / math.log2(5) + 1) / 3,
        "map@100": (1 / 2 + 1 / 4 + 1) / 3,
        "recall@1": (0 + 0 + 1 / 2) / 3,
    }
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-12), key
    for key, (lo, hi) in result.ci.items():
        assert lo <= result.metrics[key] + 1e-12 and result.metrics[key] <= hi + 1e-12, key


def test_fast_path_matches_stock_retriever_evaluator(toy_dataset, tiny_embed):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.evaluation import RetrieverEvaluator
    from llama_index.core.schema import TextNode

    fast = evaluate_retrieval(toy_dataset, tiny_embed, top_k=3, method="fast")
    nodes = [TextNode(id_=cid, text=text) for cid, text in toy_dataset.corpus.items()]
    index = VectorStoreIndex(nodes, embed_model=tiny_embed)
    stock = RetrieverEvaluator.from_metric_names(
        list(LLAMA), retriever=index.as_retriever(similarity_top_k=3)
    )
    for row in fast.per_query:
        ref = stock.evaluate(query=row.query, expected_ids=row.expected_ids)
        assert row.retrieved_ids == ref.retrieved_ids
        assert {k: row.metrics[k] for k in LLAMA} == ref.metric_vals_dict
    # not a degenerate case: the toy queries are not all hits or all misses
    assert 0 < fast.metrics["hit_rate"] < 1 or 0 < fast.metrics["mrr"] < 1


def test_retriever_path_equals_fast_path_id_for_id(toy_dataset, tiny_embed):
    fast = evaluate_retrieval(toy_dataset, tiny_embed, top_k=3, method="fast", name="m")
    slow = evaluate_retrieval(toy_dataset, tiny_embed, top_k=3, method="retriever", name="m")
    assert slow.method == "retriever" and fast.method == "fast"
    for a, b in zip(fast.per_query, slow.per_query, strict=True):
        assert a.retrieved_ids == b.retrieved_ids
        assert a.first_relevant_rank == b.first_relevant_rank or b.first_relevant_rank is None
        assert b.metrics == {k: a.metrics[k] for k in b.metrics}
    assert set(slow.metrics) >= {*LLAMA, "accuracy@1", "accuracy@3"}
    assert "mrr@10" not in slow.metrics  # needs depth 10; the retriever returned 3
    assert slow.metrics == {k: fast.metrics[k] for k in slow.metrics}


def test_ir_metrics_equal_sentence_transformers_evaluator(toy_dataset, tiny_model_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    ours = ir_metrics(toy_dataset, model)
    evaluator = InformationRetrievalEvaluator(
        queries=toy_dataset.queries,
        corpus=toy_dataset.corpus,
        relevant_docs={q: set(d) for q, d in toy_dataset.relevant_docs.items()},
        write_csv=False,
    )
    theirs = {k.removeprefix("cosine_"): v for k, v in evaluator(model).items()}
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key


def test_empty_retrieval_scores_zero_instead_of_raising(toy_dataset):
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    first = next(iter(toy_dataset.corpus))

    class HalfEmpty(BaseRetriever):
        def _retrieve(self, query_bundle):
            if "Lyft" in query_bundle.query_str:
                return [NodeWithScore(node=TextNode(id_=first, text="x"), score=1.0)]
            return []

    result = evaluate_retrieval(toy_dataset, retriever=HalfEmpty())
    rows = {r.query_id: r for r in result.per_query}
    assert rows["q0"].metrics["hit_rate"] == 1.0 and rows["q0"].retrieved_ids == [first]
    assert rows["q1"].retrieved_ids == [] and set(rows["q1"].metrics.values()) == {0.0}
    assert result.metrics["hit_rate"] == pytest.approx(1 / len(TOY_QUESTIONS))


def test_embeddings_computed_once_per_model(toy_dataset):
    from llama_index.core.embeddings import MockEmbedding

    class Counting(MockEmbedding):
        texts: list = []
        queries: list = []

        def _get_text_embeddings(self, texts):
            self.texts.extend(texts)
            return super()._get_text_embeddings(texts)

        async def _aget_query_embedding(self, query):
            self.queries.append(query)
            return await super()._aget_query_embedding(query)

    model = Counting(embed_dim=8)
    evaluate_retrieval(toy_dataset, model, top_k=2)
    assert sorted(model.texts) == sorted(toy_dataset.corpus.values())
    assert sorted(model.queries) == sorted(toy_dataset.queries.values())


def test_compare_embed_models_rows_deltas_and_wins(toy_dataset, tiny_model_path):
    from llama_index.core.embeddings import MockEmbedding

    models = {"tiny": str(tiny_model_path), "constant": MockEmbedding(embed_dim=32)}
    table = compare_embed_models(toy_dataset, models, top_k=3, n_resamples=200)
    assert [r.name for r in table.results] == ["tiny", "constant"]
    tiny, const = table.results
    assert table.deltas["constant"]["mrr"] == pytest.approx(
        const.metrics["mrr"] - tiny.metrics["mrr"]
    )
    diff = table.paired_diff("constant", "mrr")
    assert diff.ci[0] <= diff.delta <= diff.ci[1]
    rows = table.wins_losses("constant", "tiny", "mrr")
    counts = table.win_loss_counts("constant", metric="mrr")
    assert len(rows) == counts["better"] + counts["worse"]
    assert counts["better"] + counts["worse"] + counts["same"] == len(TOY_QUESTIONS)
    assert [r.delta for r in rows] == sorted((r.delta for r in rows), reverse=True)
    json.dumps(table.to_dict(per_query=True))


def test_paired_bootstrap_sees_a_real_gain_and_no_gain_on_itself():
    rng = np.random.default_rng(1)
    n, dim = 400, 16
    corpus = rng.normal(size=(n, dim))
    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"q{i}" for i in range(n)},
        corpus={f"c{i}": f"c{i}" for i in range(n)},
        relevant_docs={f"q{i}": [f"c{i}"] for i in range(n)},
    )
    close = corpus + rng.normal(size=corpus.shape) * 0.8
    far = corpus + rng.normal(size=corpus.shape) * 1.6
    good = evaluate_embeddings(ds, DatasetEmbeddings(close, corpus), name="good")
    bad = evaluate_embeddings(ds, DatasetEmbeddings(far, corpus), name="bad")
    again = evaluate_embeddings(ds, DatasetEmbeddings(far, corpus), name="again")
    table = ComparisonTable.from_results([bad, good, again])
    gain = table.paired_diff("good", "hit_rate")
    assert gain.significant and gain.delta > 0 and gain.p_value < 0.01
    same = table.paired_diff("again", "hit_rate")
    assert same.delta == 0 and same.ci == (0.0, 0.0) and not same.significant
    # a binomial proportion's 95% interval is about +-1.96 * sqrt(p(1-p)/n)
    p = bad.metrics["hit_rate"]
    lo, hi = bad.ci["hit_rate"]
    assert (hi - lo) / 2 == pytest.approx(1.96 * math.sqrt(p * (1 - p) / n), rel=0.2)
    assert evaluate_embeddings(ds, DatasetEmbeddings(far, corpus)).ci == bad.ci  # seeded


def test_dataset_json_path_is_accepted(toy_dataset, tmp_path):
    ds, emb = _hand_dataset()
    path = tmp_path / "val.json"
    ds.save_json(path)
    assert evaluate_embeddings(path, emb, top_k=2).metrics["hit_rate"] == pytest.approx(2 / 3)


# -- clear errors ---------------------------------------------------------------------------


def _mock():
    from llama_index.core.embeddings import MockEmbedding

    return MockEmbedding(embed_dim=4)


def test_error_expected_ids_not_in_corpus():
    ds = SimpleNamespace(queries={"q": "x"}, corpus={"a": "t"}, relevant_docs={"q": ["zzz"]})
    with pytest.raises(ValueError, match="'zzz' of query 'q' is not in the corpus"):
        evaluate_retrieval(ds, _mock())


def test_error_empty_dataset():
    ds = SimpleNamespace(queries={}, corpus={"a": "t"}, relevant_docs={})
    with pytest.raises(ValueError, match="no queries"):
        evaluate_retrieval(ds, _mock())
    with pytest.raises(TypeError, match="EmbeddingQAFinetuneDataset"):
        evaluate_retrieval([("q", "a")], _mock())


@pytest.mark.parametrize("top_k", [0, -1, 2.5])
def test_error_top_k_below_one(top_k):
    ds, emb = _hand_dataset()
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        evaluate_retrieval(ds, _mock(), top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        evaluate_embeddings(ds, emb, top_k=top_k)


def test_error_retriever_node_ids_are_not_corpus_ids(toy_dataset, toy_nodes):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    renamed = [TextNode(id_=f"other-{i}", text=n.text) for i, n in enumerate(toy_nodes)]
    index = VectorStoreIndex(renamed, embed_model=_mock())
    with pytest.raises(ValueError, match="not the dataset's corpus ids"):
        evaluate_retrieval(toy_dataset, retriever=index)


def test_error_bad_arguments():
    ds, emb = _hand_dataset()
    with pytest.raises(ValueError, match="either"):
        evaluate_retrieval(ds, _mock(), retriever=object())
    with pytest.raises(ValueError, match="embed model"):
        evaluate_retrieval(ds)
    with pytest.raises(ValueError, match=r"\(3, dim\) queries"):
        evaluate_embeddings(ds, DatasetEmbeddings(emb.queries[:2], emb.corpus))
    with pytest.raises(ValueError, match="primary_metric"):
        evaluate_embeddings(ds, emb, primary_metric="accuracy")
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        evaluate_retrieval(ds, "./no/such/model")


def test_existing_index_is_evaluated_and_truncated_to_top_k(
    toy_dataset, toy_nodes, tiny_model_path
):
    from llama_index.core import VectorStoreIndex

    from llama_index_finetune_embed.embeddings import load_embed_model

    model = load_embed_model(tiny_model_path)
    index = VectorStoreIndex(toy_nodes, embed_model=model)  # ids are the corpus ids
    result = evaluate_retrieval(toy_dataset, retriever=index, top_k=2, name="idx")
    assert result.method == "retriever" and result.name == "idx"
    assert all(len(r.retrieved_ids) == 2 for r in result.per_query)
    wide = evaluate_retrieval(
        toy_dataset, retriever=index.as_retriever(similarity_top_k=6), top_k=2
    )
    assert [r.retrieved_ids for r in wide.per_query] == [r.retrieved_ids for r in result.per_query]


# -- the evaluator: settings checked once, called per model --------------------------------


def _counting_model():
    """A MockEmbedding that counts every text it is asked to embed (corpus and queries)."""
    from llama_index.core.embeddings import MockEmbedding

    class Counting(MockEmbedding):
        calls: list = []

        def _get_text_embeddings(self, texts):
            self.calls.extend(texts)
            return super()._get_text_embeddings(texts)

        async def _aget_query_embedding(self, query):
            self.calls.append(query)
            return await super()._aget_query_embedding(query)

    return Counting(embed_dim=8, calls=[])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"primary_metric": "accuracy"}, "primary_metric 'accuracy' is not one of"),
        ({"primary_metric": "mrr@10", "method": "retriever", "top_k": 5}, "primary_metric"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"method": "exact"}, "method must be"),
        ({"num_workers": 0}, "num_workers must be an integer >= 1"),
        ({"confidence": 95}, "confidence must be between 0 and 1"),
    ],
)
def test_settings_are_checked_before_any_embedding(toy_dataset, settings, message):
    model = _counting_model()
    with pytest.raises(ValueError, match=message):
        RetrievalEvaluator(toy_dataset, **settings)
    with pytest.raises(ValueError, match=message):
        compare_embed_models(toy_dataset, {"a": model, "b": model}, **settings)
    with pytest.raises(ValueError, match=message):
        evaluate_retrieval(toy_dataset, model, **settings)
    assert model.calls == []


def test_retriever_path_depth_is_checked_before_retrieving(toy_dataset):
    """``mrr@10`` is on the fast path; a retriever returning 3 ids cannot score it."""
    from llama_index.core.base.base_retriever import BaseRetriever

    class Never(BaseRetriever):
        def _retrieve(self, query_bundle):
            raise AssertionError("retrieved although the settings could not be met")

    evaluator = RetrievalEvaluator(toy_dataset, top_k=3, primary_metric="mrr@10")
    with pytest.raises(ValueError, match="primary_metric 'mrr@10' is not one of"):
        evaluator(retriever=Never())


def test_metric_names_are_the_result_keys(toy_dataset):
    model = _counting_model()
    fast = RetrievalEvaluator(toy_dataset, top_k=3, n_resamples=10)(model)
    slow = RetrievalEvaluator(toy_dataset, top_k=3, n_resamples=10, method="retriever")(model)
    assert list(fast.metrics) == metric_names()
    assert list(slow.metrics) == metric_names(max_depth=3)


def test_compare_embed_models_is_the_evaluator_called_per_model(toy_dataset, tiny_model_path):
    from llama_index.core.embeddings import MockEmbedding

    models = {"tiny": str(tiny_model_path), "constant": MockEmbedding(embed_dim=32)}
    settings = dict(top_k=3, n_resamples=200, seed=3, primary_metric="hit_rate")
    table = compare_embed_models(toy_dataset, models, **settings)
    evaluator = RetrievalEvaluator(toy_dataset, **settings)
    one_by_one = [evaluator(spec, name=label) for label, spec in models.items()]
    assert [r.model_dump() for r in table.results] == [r.model_dump() for r in one_by_one]
    assert table == ComparisonTable.from_results(one_by_one)


def test_one_evaluator_scores_embeddings_like_the_functions():
    ds, emb = _hand_dataset()
    evaluator = RetrievalEvaluator(ds, top_k=2)
    assert evaluator.score_embeddings(emb, name="toy") == evaluate_embeddings(
        ds, emb, top_k=2, name="toy"
    )
    model = _counting_model()
    assert np.array_equal(evaluator.embed(model).queries, embed_dataset(ds, model).queries)


def test_workers_is_a_deprecated_alias_of_num_workers(toy_dataset):
    model = _counting_model()
    message = r"evaluate_retrieval\(workers=...\) is deprecated; pass num_workers="
    with pytest.warns(DeprecationWarning, match=message) as rec:
        old = evaluate_retrieval(toy_dataset, model, top_k=2, workers=2, n_resamples=10)
    assert rec[0].filename == __file__  # attributed to the caller, not to our package
    new = evaluate_retrieval(toy_dataset, model, top_k=2, num_workers=2, n_resamples=10)
    assert old == new
    with pytest.warns(DeprecationWarning, match="compare_embed_models"):
        compare_embed_models(toy_dataset, {"m": model}, top_k=2, workers=2, n_resamples=10)
    with pytest.warns(DeprecationWarning, match="embed_dataset"):
        embed_dataset(toy_dataset, model, workers=2)
    with pytest.raises(TypeError, match="pass num_workers="):
        evaluate_retrieval(toy_dataset, model, workers=2, num_workers=2)


def test_public_signatures_show_the_evaluator_settings():
    settings = [
        p
        for p in inspect.signature(RetrievalEvaluator).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    names = [p.name for p in settings]
    assert names[:2] == ["top_k", "method"] and "num_workers" in names
    for fn in (evaluate_retrieval, compare_embed_models, evaluate_embeddings, embed_dataset):
        params = list(inspect.signature(fn).parameters.values())
        assert [p.name for p in params[-len(settings) :]] == names, fn.__name__
        own = [p for p in params[-len(settings) :] if p not in settings]
        assert [p.name for p in own] == (["index"] if fn is compare_embed_models else [])
        assert not any(p.kind is p.VAR_KEYWORD for p in params), fn.__name__
        assert "num_workers=8" in fn.__doc__ and "Example:" in fn.__doc__, fn.__name__
    assert list(inspect.signature(evaluate_retrieval).parameters)[:4] == [
        "dataset", "embed_model", "retriever", "name"
    ]  # fmt: skip


def test_results_do_not_import_the_report_and_the_stage_imports_no_torch():
    code = (
        "import sys\n"
        "import llama_index_finetune_embed.evaluate.results\n"
        "assert 'llama_index_finetune_embed.evaluate.report' not in sys.modules\n"
        "import llama_index_finetune_embed.evaluate\n"
        "assert 'llama_index_finetune_embed.evaluate.report' not in sys.modules\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_mrr_at_k_equals_the_fast_path_mrr_at_10():
    rng = np.random.default_rng(0)
    n = 60
    corpus = rng.normal(size=(n, 8))
    queries = corpus + rng.normal(size=corpus.shape) * 1.2
    ds = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": f"q{i}" for i in range(n)},
        corpus={f"c{i:02d}": f"c{i}" for i in range(n)},
        relevant_docs={f"q{i}": [f"c{i:02d}"] for i in range(n)},
    )
    fast = evaluate_embeddings(ds, DatasetEmbeddings(queries, corpus), n_resamples=1)
    mrr = mrr_at_k(queries, corpus, [{i} for i in range(n)], k=10)
    assert mrr == pytest.approx(fast.metrics["mrr@10"], abs=1e-12)
    assert 0 < mrr < 1


def _long_dataset() -> EmbeddingQAFinetuneDataset:
    """Chunks of three toy sentences; each question's chunks are those holding its sentence."""
    corpus = {f"c{i}": " ".join(TOY_TEXTS[(i + j) % 8] for j in range(3)) for i in range(8)}
    relevant = {f"q{i}": [f"c{(t - j) % 8}" for j in range(3) for t in rel[:1]]
                for i, (_, rel) in enumerate(TOY_QUESTIONS)}  # fmt: skip
    queries = {f"q{i}": q for i, (q, _) in enumerate(TOY_QUESTIONS)}
    return EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def test_windows_fast_path_equals_the_window_index_retriever_id_for_id(tiny_embed):
    """index='windows': the fast path (windows embedded once, best window per chunk) ranks
    exactly as build_window_index's retriever does, and differs from the plain index."""
    from llama_index_finetune_embed.evaluate.fast import corpus_windows

    ds = _long_dataset()
    tiny_embed._model.max_seq_length = 14  # every chunk needs several windows
    texts, starts = corpus_windows(ds, tiny_embed)
    assert len(texts) >= 3 * len(starts)  # several windows per chunk
    fast = evaluate_retrieval(ds, tiny_embed, top_k=5, index="windows", n_resamples=10)
    slow = evaluate_retrieval(ds, tiny_embed, top_k=5, index="windows", method="retriever",
                              n_resamples=10)  # fmt: skip
    plain = evaluate_retrieval(ds, tiny_embed, top_k=5, n_resamples=10)
    for f, r in zip(fast.per_query, slow.per_query, strict=True):
        _same_ranking_up_to_ties(f.retrieved_ids, f.scores, r.retrieved_ids)
    assert [r.retrieved_ids for r in fast.per_query] != [r.retrieved_ids for r in plain.per_query]


def _same_ranking_up_to_ties(ids: list[str], scores: list[float], other: list[str]) -> None:
    """``other`` ranks as ``ids`` (scored ``scores``) do; chunks sharing a sentence can share a
    window text, and equal scores may come in any order (a tie at the cutoff: any members)."""
    assert len(other) == len(ids)
    start = 0
    while start < len(ids):
        stop = start + 1
        while stop < len(ids) and math.isclose(scores[stop], scores[start], abs_tol=1e-9):
            stop += 1
        if stop < len(ids):  # a tie group inside the top k: the same members
            assert set(other[start:stop]) == set(ids[start:stop])
        start = stop


def test_compare_embed_models_both_gives_a_plain_and_a_windows_row_per_model(tiny_model_path):
    from llama_index_finetune_embed.embeddings import load_embed_model

    ds = _long_dataset()
    model = load_embed_model(tiny_model_path, max_length=14)
    table = compare_embed_models(ds, {"base": model, "other": model}, index="both", top_k=3,
                                 n_resamples=10)  # fmt: skip
    assert [r.name for r in table.results] == ["base", "base + windows", "other",
                                               "other + windows"]  # fmt: skip
    windows = evaluate_retrieval(ds, model, top_k=3, index="windows", n_resamples=10)
    assert table.results[1].metrics == windows.metrics
    with pytest.raises(ValueError, match="index must be 'plain', 'windows' or 'both'"):
        compare_embed_models(ds, {"base": model}, index="max")
    with pytest.raises(ValueError, match="index must be 'plain' or 'windows'"):
        RetrievalEvaluator(ds, index="both")
