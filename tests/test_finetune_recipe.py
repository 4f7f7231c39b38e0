"""finetune.recipe: one validated, frozen settings object; the engine takes it or its fields."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from _finetune_data import toy_finetune_dataset

from llama_index_finetune_embed.finetune import FinetuneRecipe, SentenceTransformersFinetuneEngine
from llama_index_finetune_embed.finetune.recipe import resolve_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
        ({"precision": "half"}, "precision must be one of"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\) or None"),
        ({"attention_dropout": -0.1}, r"attention_dropout must be in \[0, 1\) or None"),
        ({"freeze_layers": -1}, "freeze_layers must be an integer >= 0"),
        ({"hard_negatives": 1.5}, "hard_negatives must be an integer >= 0"),
        ({"hard_negative_margin": 1.0}, r"hard_negative_margin must be in \[0, 1\)"),
        ({"mini_batch_size": 0}, "mini_batch_size must be a positive integer"),
        ({"checkpoint_steps": True}, "checkpoint_steps must be a positive integer"),
        ({"overlap_words": 0}, "overlap_words must be a positive integer"),
        ({"max_seq_length": -3}, "max_seq_length must be a positive integer"),
        ({"matryoshka_dims": (32, 0)}, r"matryoshka_dims must be positive integers, got \[32, 0\]"),
        ({"matryoshka_dims": ("32",)}, "matryoshka_dims must be positive integers"),
        ({"base_weight": 1.0}, r"base_weight must be in \[0, 1\)"),
        ({"guard_tolerance": -1}, "guard_tolerance must be >= 0"),
    ],
)
def test_every_option_is_checked_when_the_recipe_is_made(options, message):
    with pytest.raises(ValueError, match=message):
        FinetuneRecipe(**options)


def test_recipe_is_frozen_and_replace_validates_again():
    recipe = FinetuneRecipe(matryoshka_dims=[32, 16])
    assert recipe.matryoshka_dims == (32, 16)  # a tuple: hashable, and cannot change
    assert FinetuneRecipe(matryoshka_dims=[]).matryoshka_dims is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.learning_rate = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="warmup_ratio"):
        dataclasses.replace(recipe, warmup_ratio=2.0)


def test_recorded_options_keep_the_metrics_json_keys_and_order():
    recorded = FinetuneRecipe(matryoshka_dims=(32, 16)).recorded()
    assert list(recorded) == [
        "learning_rate", "warmup_ratio", "weight_decay", "precision", "dropout",
        "attention_dropout", "freeze_layers", "group_by_chunk", "topic_batches",
        "hard_negatives", "hard_negative_margin", "matryoshka_dims", "cached_loss",
        "mini_batch_size", "symmetric", "overlap_words", "checkpoint_steps", "seed",
    ]  # fmt: skip
    assert recorded["matryoshka_dims"] == [32, 16]  # a list, as json.load gives it back


def test_chunk_groups_only_for_the_default_loss():
    assert FinetuneRecipe().uses_chunk_groups(custom_loss=False)
    assert not FinetuneRecipe().uses_chunk_groups(custom_loss=True)
    assert not FinetuneRecipe(hard_negatives=1).uses_chunk_groups(custom_loss=False)
    assert not FinetuneRecipe(cached_loss=True).uses_chunk_groups(custom_loss=False)
    assert not FinetuneRecipe(group_by_chunk=False).uses_chunk_groups(custom_loss=False)


def test_keywords_override_a_given_recipe_and_unknown_ones_name_the_closest():
    base = FinetuneRecipe(learning_rate=2e-5, seed=1)
    merged = resolve_recipe(base, {"seed": 7}, caller="Engine")
    assert (merged.learning_rate, merged.seed) == (2e-5, 7) and base.seed == 1
    assert resolve_recipe(base, {}, caller="Engine") is base
    assert resolve_recipe(None, {}, caller="Engine") == FinetuneRecipe()
    with pytest.raises(TypeError, match="'lerning_rate'; did you mean 'learning_rate'"):
        resolve_recipe(None, {"lerning_rate": 1e-3}, caller="Engine")
    with pytest.raises(TypeError, match="did you mean 'batch_size'"):
        resolve_recipe(None, {"batchsize": 8}, caller="Engine", known=["batch_size"])
    with pytest.raises(TypeError, match="recipe must be a FinetuneRecipe, got dict"):
        resolve_recipe({"seed": 1}, {}, caller="Engine")  # type: ignore[arg-type]


def test_engine_refuses_bad_options_before_loading_a_model(tmp_path):
    """Checked in the constructor, before any model work: the model id need not even exist."""
    ds, missing = toy_finetune_dataset(), str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="matryoshka_dims must be positive integers"):
        SentenceTransformersFinetuneEngine(ds, missing, tmp_path / "o", matryoshka_dims=(0,))
    with pytest.raises(TypeError, match="unexpected keyword argument 'base_wieght'.*'base_weight'"):
        SentenceTransformersFinetuneEngine(ds, missing, tmp_path / "o", base_wieght=0.3)
    with pytest.raises(TypeError, match="did you mean 'trust_remote_code'"):
        SentenceTransformersFinetuneEngine(ds, missing, tmp_path / "o", trust_remote=True)


def test_engine_takes_a_recipe_and_keywords_on_top(tiny_model_path, tmp_path):
    recipe = FinetuneRecipe(learning_rate=3e-5, query_prompt="query: ", guard=False)
    engine = SentenceTransformersFinetuneEngine(
        toy_finetune_dataset(), str(tiny_model_path), tmp_path / "o", batch_size=4,
        recipe=recipe, base_weight=0.0,
    )  # fmt: skip
    assert engine.recipe == dataclasses.replace(recipe, base_weight=0.0)
    assert engine.query_prompt == "query: " and engine.recipe.learning_rate == 3e-5
    with pytest.raises(ValueError, match=r"matryoshka_dims must be in 1\.\.32, got \[64\]"):
        SentenceTransformersFinetuneEngine(  # the width check needs the model: also at init
            toy_finetune_dataset(), str(tiny_model_path), tmp_path / "o", batch_size=4,
            matryoshka_dims=(64,),
        )  # fmt: skip


def test_show_progress_follows_the_logger_unless_given(tiny_model_path, tmp_path, caplog):
    import logging

    def engine(**kwargs):
        return SentenceTransformersFinetuneEngine(
            toy_finetune_dataset(), str(tiny_model_path), tmp_path / "o", batch_size=4, **kwargs
        )

    with caplog.at_level(logging.WARNING, logger="llama_index_finetune_embed"):
        assert engine().show_progress is False
    with caplog.at_level(logging.INFO, logger="llama_index_finetune_embed"):
        assert engine().show_progress is True
        assert engine(show_progress=False).show_progress is False


def test_importing_the_stage_loads_no_torch():
    code = (
        "import sys; import llama_index_finetune_embed.finetune as f;"
        "from llama_index_finetune_embed.finetune import FinetuneRecipe, RetrievalGuard;"
        "f.FinetuneRecipe(seed=1);"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT)})
