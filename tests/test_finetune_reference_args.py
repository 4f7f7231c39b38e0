"""llama-index-finetuning's SentenceTransformersFinetuneEngine arguments: order, mapping."""

from __future__ import annotations

import inspect
import warnings

import pytest
from _finetune_data import toy_finetune_dataset

from llama_index_finetune_embed._compat import ReferenceArgumentWarning
from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

# llama-index-finetuning 0.4.2, SentenceTransformersFinetuneEngine.__init__, in order
REFERENCE = [
    "dataset", "model_id", "model_output_path", "batch_size", "val_dataset", "loss", "epochs",
    "show_progress_bar", "evaluation_steps", "use_all_docs", "trust_remote_code", "device",
    "save_checkpoints", "resume_from_checkpoint", "checkpoint_save_steps",
    "checkpoint_save_total_limit",
]  # fmt: skip


def test_the_reference_parameters_come_first_in_its_order_and_ours_are_keyword_only():
    params = inspect.signature(SentenceTransformersFinetuneEngine.__init__).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["self", *REFERENCE]
    keyword_only = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == {"train_dataset", "recipe", "show_progress", "args", "guard_checks"}


def test_reference_arguments_positionally_map_onto_the_recipe(tiny_model_path, tmp_path):
    import torch

    ds = toy_finetune_dataset()
    out = str(tmp_path / "exp")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceArgumentWarning)  # all have an equivalent here
        engine = SentenceTransformersFinetuneEngine(
            ds, str(tiny_model_path), out, 4, ds, None, 1, False, 20, True, False,
            torch.device("cpu"), True, True, 20,
        )  # fmt: skip
    assert engine.model_output_path == out and isinstance(engine.model_output_path, str)
    assert engine.output_dir == tmp_path / "exp"
    assert engine.device == "cpu" and engine.show_progress is False
    assert engine.recipe.checkpoint_steps == 20 and engine.recipe.keep_checkpoints
    assert engine.recipe.resume_from_checkpoint is True
    by_name = SentenceTransformersFinetuneEngine(
        train_dataset=ds, model_id=str(tiny_model_path), model_output_path=out, batch_size=4,
        save_checkpoints=True,
    )  # fmt: skip
    assert by_name.recipe.checkpoint_steps == 500  # the reference's default step count


def test_arguments_without_an_equivalent_warn_and_conflicts_are_errors(tiny_model_path, tmp_path):
    ds, model, out = toy_finetune_dataset(), str(tiny_model_path), tmp_path / "o"

    def engine(**kwargs):
        return SentenceTransformersFinetuneEngine(ds, model, out, 4, **kwargs)

    for kwargs, match in [
        ({"use_all_docs": False}, "use_all_docs=False .*every relevant chunk"),
        ({"checkpoint_save_total_limit": 3}, "checkpoint_save_total_limit .*at most 2"),
        ({"evaluation_steps": 10}, "evaluation_steps .*no val_dataset"),
        ({"checkpoint_save_steps": 10}, "checkpoint_save_steps .*save_checkpoints=True"),
    ]:
        with pytest.warns(ReferenceArgumentWarning, match=match):
            engine(**kwargs)
    with pytest.raises(ValueError, match="evaluation_steps=10 and checkpoint_save_steps=20"):
        engine(val_dataset=ds, evaluation_steps=10, save_checkpoints=True, checkpoint_save_steps=20)
    with pytest.raises(ValueError, match="checkpoint_save_steps and checkpoint_steps=7"):
        engine(save_checkpoints=True, checkpoint_steps=7)
    with pytest.raises(ValueError, match="show_progress_bar=True and show_progress=False"):
        engine(show_progress_bar=True, show_progress=False)
    with pytest.raises(TypeError, match="dataset= or train_dataset=, not both"):
        SentenceTransformersFinetuneEngine(ds, model, out, train_dataset=ds)
    with pytest.raises(TypeError, match="missing the training set"):
        SentenceTransformersFinetuneEngine(model_id=model, model_output_path=out)
    with pytest.raises(TypeError, match="device must be a str or torch.device"):
        engine(device=0)
