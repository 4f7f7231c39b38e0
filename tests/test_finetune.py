"""SentenceTransformersFinetuneEngine on the tiny offline model: train, save, serve, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _finetune_data import QUESTIONS, toy_finetune_dataset
from conftest import TOY_TEXTS

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.finetune import (
    SentenceTransformersFinetuneEngine,
    load_finetuned_model,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_dataset() -> EmbeddingQAFinetuneDataset:
    return toy_finetune_dataset()





def _engine(ds, model, out, **kwargs) -> SentenceTransformersFinetuneEngine:
    kwargs.setdefault("batch_size", 4)
    return SentenceTransformersFinetuneEngine(
        ds, model_id=str(model), model_output_path=out, **kwargs
    )


# -- training, saving, serving ---------------------------------------------------------------


@pytest.mark.slow
def test_finetune_saves_model_card_metrics_and_prompts(toy_dataset, tiny_model_path, tmp_path):
    out = tmp_path / "ft"
    engine = _engine(
        toy_dataset, tiny_model_path, out, val_dataset=toy_dataset,
        query_prompt="query: ", document_prompt="passage: ",
    )
    engine.finetune()

    assert (out / "model.safetensors").is_file()
    assert not (out / "checkpoints").exists()  # removed after a successful run
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": "query: ", "document": "passage: "}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == engine.metrics
    assert 0.0 < metrics["metrics"]["val_cosine_mrr@10"] <= 1.0
    assert metrics["train_rows"] == 16 and metrics["train_chunks"] == 8
    assert metrics["best_checkpoint"]  # the best of the per-epoch evaluations was loaded
    card = (out / "README.md").read_text()
    assert str(tiny_model_path) in card and "16 queries over 8 chunks" in card
    assert "MultipleNegativesRankingLoss" in card and "val_cosine_mrr@10" in card

    # served exactly as trained: the LlamaIndex embedding equals encode() with the prompts
    from sentence_transformers import SentenceTransformer

    from llama_index_finetune_embed.finetune import load_finetuned_model

    assert engine.get_finetuned_model().model_name == str(out)
    # what get_finetuned_model() loads, in fp32 ("auto" is bf16 on an AVX512-BF16 CPU; encode()
    # below runs in fp32)
    embed = load_finetuned_model(out, precision="fp32")
    st = SentenceTransformer(str(out), device="cpu")
    query, chunk = QUESTIONS[0][0], TOY_TEXTS[0]
    want_q = st.encode(query, prompt="query: ", normalize_embeddings=True)
    want_d = st.encode(chunk, prompt="passage: ", normalize_embeddings=True)
    np.testing.assert_allclose(embed.get_query_embedding(query), want_q, atol=1e-5)
    np.testing.assert_allclose(embed.get_text_embedding(chunk), want_d, atol=1e-5)
    bare = st.encode(query, normalize_embeddings=True)
    assert not np.allclose(embed.get_query_embedding(query), bare, atol=1e-3)

    # and in a fresh process, from the directory alone
    code = (
        "import sys, json; from llama_index_finetune_embed.finetune import load_finetuned_model;"
        "e = load_finetuned_model(sys.argv[1], precision='fp32');"
        "print(json.dumps(e.get_query_embedding(sys.argv[2])))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(out), query], env=env,
                          capture_output=True, text=True, check=True)
    np.testing.assert_allclose(json.loads(proc.stdout.splitlines()[-1]), want_q, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(toy_dataset, tiny_model_path, tmp_path):
    import shutil

    out = tmp_path / "ft"
    first = _engine(toy_dataset, tiny_model_path, out, checkpoint_steps=2, keep_checkpoints=True)
    first.finetune()
    assert first.metrics["global_steps"] == 4 and first.metrics["steps_run"] == 4
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")  # as if killed after step 2's checkpoint

    second = _engine(toy_dataset, tiny_model_path, out, checkpoint_steps=2,
                     resume_from_checkpoint=True)
    second.finetune()
    assert second.metrics["resumed_from"].endswith("checkpoint-2")
    assert second.metrics["steps_run"] == 2 and second.metrics["global_steps"] == 4


MARKER = "Zorblax7Secret"


def _text_files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` that decodes as UTF-8 (the card, configs, tokenizer...)."""
    texts = {}
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                texts[str(path.relative_to(folder))] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # the weights
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("card_examples", [False, True])
def test_model_card_quotes_no_training_text_unless_asked(tiny_model_path, tmp_path, card_examples):
    """Issue #14, item 8: a shared model does not carry pieces of the user's documents."""
    pairs = [(f"{q} {MARKER}", f"{text} {MARKER} inside.")
             for text, qs in zip(TOY_TEXTS, QUESTIONS, strict=True) for q in qs]
    ds = EmbeddingQAFinetuneDataset.from_pairs(pairs)
    out = tmp_path / "ft"
    engine = _engine(ds, tiny_model_path, out, epochs=1, guard=False, keep_checkpoints=True,
                     checkpoint_steps=1, card_examples=card_examples)
    engine.finetune()
    texts = _text_files(out)
    assert "README.md" in texts and "config_sentence_transformers.json" in texts
    assert any(name.startswith("checkpoints") and name.endswith("README.md") for name in texts)
    quoted = sorted(name for name, text in texts.items() if MARKER in text)
    if card_examples:
        assert "README.md" in quoted  # widget and sample rows, as sentence-transformers writes
        assert "widget:" in texts["README.md"]
    else:
        assert quoted == []
        assert "lovely today" in texts["README.md"]  # the library's generic usage example


def _failing_saves(engine, monkeypatch, fail_in):
    """Make ``save_pretrained`` fail as a full disk does (a partial weights file, then ENOSPC)
    for the folders ``fail_in(folder)`` names; the rest save for real."""
    import errno

    real = engine.model.save_pretrained

    def save(path, **kwargs):
        if fail_in(Path(path)):
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, **kwargs)

    monkeypatch.setattr(engine.model, "save_pretrained", save)


@pytest.mark.slow
def test_a_failed_save_rescues_the_weights_and_says_where(
    toy_dataset, tiny_model_path, tmp_path, monkeypatch
):
    """Issue #14, item 3: a full disk while saving never loses the trained weights."""
    import tempfile

    import torch

    from llama_index_finetune_embed.finetune import ModelSaveError

    out = tmp_path / "ft"
    engine = _engine(toy_dataset, tiny_model_path, out, epochs=1, guard=False)
    _failing_saves(engine, monkeypatch, lambda folder: folder == out)
    with pytest.raises(ModelSaveError) as info:
        engine.finetune()
    error = info.value
    assert isinstance(error, OSError)  # the CLI prints it as one line
    rescue = error.rescue_path
    assert rescue is not None and rescue.parent == tmp_path and rescue.name.startswith("ft.rescue-")
    message = str(error)
    assert "\n" not in message and str(out) in message and str(rescue) in message
    assert "No space left on device" in message
    assert not (out / "model.safetensors").exists()  # the half-written file is not left to load
    assert json.loads((rescue / "metrics.json").read_text()) == engine.metrics
    from sentence_transformers import SentenceTransformer

    saved = SentenceTransformer(str(rescue), device="cpu").state_dict()
    trained = engine.model.state_dict()
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[k].cpu(), trained[k].cpu()) for k in trained)  # the weights
    assert len(load_finetuned_model(rescue).get_text_embedding(TOY_TEXTS[0])) == 32

    # beside the output folder full too: the system temp folder (often another filesystem)
    temp = tmp_path / "system-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    _failing_saves(engine, monkeypatch, lambda folder: folder.parent == tmp_path)
    with pytest.raises(ModelSaveError) as info:
        engine._save()
    assert info.value.rescue_path.parent == temp
    assert (info.value.rescue_path / "modules.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if ".rescue-" in p.name] == [rescue.name]

    # nowhere to write: one error that says so and how to keep the model in memory
    _failing_saves(engine, monkeypatch, lambda folder: True)
    with pytest.raises(ModelSaveError, match="nor to .*engine.model.save_pretrained") as info:
        engine._save()
    assert info.value.rescue_path is None


@pytest.mark.slow
def test_options_hard_negatives_matryoshka_cached_and_custom_loss(
    toy_dataset, tiny_model_path, tmp_path
):
    engine = _engine(
        toy_dataset, tiny_model_path, tmp_path / "a", hard_negatives=1,
        hard_negative_margin=0.0, matryoshka_dims=(32, 16), cached_loss=True,
        mini_batch_size=2, precision="fp32",
    )
    engine.finetune()
    recipe = engine.metrics["recipe"]
    assert recipe["loss"] == "MatryoshkaLoss" and recipe["precision"] == "fp32"
    assert all(len(negs) == 1 for _, _, negs in engine._rows)
    for qid, doc, (neg,) in engine._rows:  # a negative is never a relevant chunk
        assert neg != doc and neg not in toy_dataset.relevant_docs[qid]

    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    with pytest.raises(ValueError, match="hard_negatives=1: no training pair"):
        # every chunk scores above 1% of its positive: all are too close to be safe negatives
        _engine(toy_dataset, tiny_model_path, tmp_path / "b", hard_negatives=1,
                hard_negative_margin=0.99).finetune()
    custom = _engine(toy_dataset, tiny_model_path, tmp_path / "c",
                     loss=lambda model: CoSENTLoss(model))
    trainer, _ = custom.build_trainer()
    assert type(trainer.loss).__name__ == "CoSENTLoss"


def test_prompts_resolution_and_sequence_length(toy_dataset, tiny_model_path, tmp_path):
    from llama_index_finetune_embed.finetune.model import resolve_prompts

    engine = _engine(toy_dataset, tiny_model_path, tmp_path / "p")
    assert engine.max_seq_length == 128  # what the tiny model's positions allow
    assert (engine.query_prompt, engine.document_prompt) == ("", "")
    model = engine.model
    assert resolve_prompts(model, "BAAI/bge-small-en-v1.5", None, None)[0].startswith("Represent")
    assert resolve_prompts(model, "intfloat/e5-small-v2", None, None) == ("query: ", "passage: ")
    assert resolve_prompts(model, "intfloat/e5-small-v2", "q: ", None) == ("q: ", "passage: ")
    model.prompts = {"query": "saved: "}
    assert resolve_prompts(model, "BAAI/bge-small-en-v1.5", None, None) == ("saved: ", "")


# -- clear errors --------------------------------------------------------------------------


def test_missing_model_says_how_to_work_offline(toy_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        _engine(toy_dataset, tmp_path / "no-such-model", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="local:all-MiniLM-L6-v2"):
        _engine(toy_dataset, "nobody/no-such-model-xyz", tmp_path / "o")


def test_bad_datasets_are_named(toy_dataset, tiny_model_path, tmp_path):
    empty = EmbeddingQAFinetuneDataset(queries={}, corpus={"c": "text"}, relevant_docs={})
    with pytest.raises(ValueError, match="train_dataset is empty"):
        _engine(empty, tiny_model_path, tmp_path / "o")
    broken = toy_dataset.model_copy(deep=True)
    broken.relevant_docs[next(iter(broken.queries))] = ["missing-chunk"]
    with pytest.raises(ValueError, match="val_dataset has inconsistent ids.*missing-chunk"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "o", val_dataset=broken)
    with pytest.raises(TypeError, match="EmbeddingQAFinetuneDataset"):
        _engine([("q", "d")], tiny_model_path, tmp_path / "o")


def test_bad_options_are_refused_in_the_constructor(toy_dataset, tiny_model_path, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        _engine(toy_dataset, tiny_model_path, blocker / "out")
    with pytest.raises(ValueError, match="precision must be one of"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "o", precision="half")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "o", precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "o", epochs=0)
    with pytest.raises(ValueError, match="max_seq_length must be in 1..128"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "o", max_seq_length=512)
    with pytest.raises(FileNotFoundError, match="no finetuned model"):
        load_finetuned_model(tmp_path / "nothing")


@pytest.mark.slow
def test_batch_size_shrinks_to_what_the_data_allows_and_says_so(
    tiny_model_path, tmp_path, caplog
):
    """Issue #14, item 7: the default 16 chunks per batch trains on a 3-chunk corpus."""
    pairs = [(q, text) for text, qs in zip(TOY_TEXTS[:3], QUESTIONS[:3], strict=True) for q in qs]
    small = EmbeddingQAFinetuneDataset.from_pairs(pairs)
    with caplog.at_level("WARNING", logger="llama_index_finetune_embed"):
        engine = SentenceTransformersFinetuneEngine(
            small, model_id=str(tiny_model_path), model_output_path=tmp_path / "ft", epochs=1,
            guard=False,
        )
    assert engine.batch_size == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "batch_size 16 -> 3: only 3 chunks of train_dataset can share a batch (chunks that "
        "share a text or overlap are kept apart)"
    ]
    engine.finetune()
    assert engine.metrics["recipe"]["batch_size"] == 3 and engine.metrics["global_steps"] == 1


def test_batch_size_one_warns_and_one_chunk_is_refused(toy_dataset, tiny_model_path, tmp_path,
                                                       caplog):
    with caplog.at_level("WARNING", logger="llama_index_finetune_embed"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "a", batch_size=1)
    assert "batch_size=1: no chunk has an in-batch negative" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="llama_index_finetune_embed"):
        _engine(toy_dataset, tiny_model_path, tmp_path / "b", batch_size=2)
    assert "batch_size" not in caplog.text  # a batch the data allows: nothing to say

    one = EmbeddingQAFinetuneDataset.from_pairs([(q, TOY_TEXTS[0]) for q in QUESTIONS[0]])
    with pytest.raises(ValueError, match="1 chunk.* can share a batch; training needs at least 2"):
        _engine(one, tiny_model_path, tmp_path / "c")
    same = EmbeddingQAFinetuneDataset(  # two ids, one text: still one chunk
        queries={"q1": "When was Lyft founded?", "q2": "Who rides?"},
        corpus={"c1": TOY_TEXTS[0], "c2": TOY_TEXTS[0]},
        relevant_docs={"q1": ["c1"], "q2": ["c2"]},
    )
    with pytest.raises(ValueError, match="training needs at least 2"):
        _engine(same, tiny_model_path, tmp_path / "d")


def _docs_torchrun_command() -> list[str]:
    """The ``torchrun`` line of docs/scale.md, as tokens."""
    import shlex

    lines = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8").splitlines()
    return shlex.split(next(line for line in lines if line.startswith("torchrun ")))


@pytest.mark.slow
def test_the_docs_torchrun_command_trains_on_two_cpu_ranks(toy_dataset, tiny_model_path, tmp_path):
    """docs/scale.md's command, with this test's dataset, model and output folder."""
    data = tmp_path / "train.json"
    toy_dataset.save_json(data)
    out = tmp_path / "ddp"
    cmd = _docs_torchrun_command()
    assert cmd[:4] == ["torchrun", "--nproc_per_node", "2", "--standalone"]
    assert cmd[4] == "examples/train_ddp.py" and cmd[6::2] == ["--model", "--out"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *cmd[1:4], str(ROOT / cmd[4]), str(data),
           "--model", str(tiny_model_path), "--out", str(out), "--batch-size", "2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"]["batch_size"] == 4  # 2 ranks x 2 chunks
    assert metrics["global_steps"] == 4  # 8 chunks / (2 ranks x 2 chunks) x 2 epochs: it trained
    assert len(load_finetuned_model(out).get_text_embedding("Lyft")) == 32


@pytest.mark.parametrize("show_progress", [True, False])
def test_training_shows_the_trainers_bar_and_logs_the_loss(
    toy_dataset, tiny_model_path, tmp_path, show_progress
):
    """Issue #14, item 9: the trainer's own bar (steps, ETA) and its loss log, or silence."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    engine = _engine(toy_dataset, tiny_model_path, tmp_path / "o", show_progress=show_progress)
    trainer, _ = engine.build_trainer()
    args = trainer.args
    assert args.disable_tqdm is (not show_progress)
    assert args.logging_strategy == "steps" and args.logging_steps == 0.1  # a tenth of the run
    assert args.logging_first_step
    callbacks = {type(cb) for cb in trainer.callback_handler.callbacks}
    assert (ProgressCallback in callbacks) is show_progress
    assert PrinterCallback not in callbacks  # quiet means no printed loss dicts either
    with_checkpoints = _engine(toy_dataset, tiny_model_path, tmp_path / "c", checkpoint_steps=20)
    assert with_checkpoints.build_trainer()[0].args.logging_steps == 20


def test_show_progress_none_follows_the_log_level(toy_dataset, tiny_model_path, tmp_path):
    import logging

    package = logging.getLogger("llama_index_finetune_embed")
    before = package.level
    try:
        package.setLevel(logging.INFO)  # as the CLI sets it
        assert _engine(toy_dataset, tiny_model_path, tmp_path / "a").show_progress is True
        package.setLevel(logging.WARNING)
        assert _engine(toy_dataset, tiny_model_path, tmp_path / "b").show_progress is False
    finally:
        package.setLevel(before)


def test_training_arguments_override_the_recipe_and_stay_untouched(
    toy_dataset, tiny_model_path, tmp_path
):
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    from llama_index_finetune_embed.finetune.sampler import ChunkAwareBatchSampler

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "mine"), per_device_train_batch_size=2, learning_rate=5e-5,
        save_strategy="no", report_to=[], use_cpu=True,
    )
    before = dict(vars(args))
    engine = _engine(toy_dataset, tiny_model_path, tmp_path / "o", args=args,
                     query_prompt="query: ")
    trainer, evaluator = engine.build_trainer()
    assert trainer.args is not args and evaluator is None
    assert trainer.args.learning_rate == 5e-5 and trainer.args.per_device_train_batch_size == 2
    assert trainer.args.output_dir == str(tmp_path / "mine")
    assert trainer.args.prompts == {"anchor": "query: "}  # trained with the prompt it saves
    assert trainer.args.batch_sampler.func is ChunkAwareBatchSampler
    assert trainer.args.batch_sampler.keywords["groups"]  # the recipe's chunk-grouped batches
    # the user's object is as they made it: no sampler, no prompts filled in
    assert args.prompts is None and args.batch_sampler == "batch_sampler"
    assert {k: v for k, v in vars(args).items() if k in before} == before


def test_default_length_is_what_the_positions_take_not_the_st_config():
    """all-MiniLM-L6-v2 is configured for 256 tokens but takes 512; 10-K chunks need them."""
    from llama_index_finetune_embed.embeddings import LOCAL_MINILM, load_sentence_transformer
    from llama_index_finetune_embed.finetune.model import default_max_seq_length

    model = load_sentence_transformer(LOCAL_MINILM, device="cpu")
    assert model.max_seq_length == 256
    assert default_max_seq_length(model) == 512




@pytest.mark.slow
def test_served_lengths_plain_halfway_windows_at_the_bases_length(
    toy_dataset, tiny_model_path, tmp_path
):
    """A base configured shorter than it can read (MiniLM: 256 of 512) is trained at the longer
    length, served plain halfway between, and read in windows of the base's length."""
    from llama_index_finetune_embed.serving import window_splitter

    config = tiny_model_path / "sentence_bert_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_seq_length": 64}))
    engine = _engine(toy_dataset, tiny_model_path, tmp_path / "ft", epochs=1, guard=False)
    assert engine.max_seq_length == 128  # trained at what the positions take
    engine.finetune()
    assert json.loads((tmp_path / "ft" / "serving.json").read_text()) == {
        "max_seq_length": 96, "window_length": 64, "precision": "auto",
    }  # fmt: skip
    served = engine.get_finetuned_model()
    assert served._model.max_seq_length == 96 and served.window_length == 64
    assert window_splitter(served).tokens == 64 - 2  # [CLS] and [SEP]

    fixed = _engine(toy_dataset, tiny_model_path, tmp_path / "fixed", epochs=1, guard=False,
                    max_seq_length=100)  # fmt: skip
    fixed.finetune()
    assert window_splitter(fixed.get_finetuned_model()).tokens == 100 - 2
