from __future__ import annotations

import json

import pytest

from llama_index_finetune_embed import embeddings as _models


def test_packaged_minilm_and_alias_resolve_to_a_directory():
    path = _models.packaged_minilm_path()
    assert (path / "modules.json").is_file()
    assert _models.resolve_model_id(_models.LOCAL_MINILM) == str(path)


def test_missing_local_model_dir_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        _models.load_sentence_transformer(str(tmp_path / "nope"))


def test_unknown_hub_id_offline_says_how_to_go_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="local:all-MiniLM-L6-v2"):
        _models.load_sentence_transformer("BAAI/bge-small-en-v1.5-does-not-exist")


def test_tiny_model_loads(tiny_model_path):
    model = _models.load_sentence_transformer(tiny_model_path, device="cpu")
    assert model.encode(["hello"]).shape == (1, 32)


def test_load_embed_model_keeps_saved_prompts(tiny_model_path):
    import json

    import numpy as np

    cfg = tiny_model_path / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"] = {"query": "query: ", "document": "passage: "}
    cfg.write_text(json.dumps(data))
    # fp32: "auto" is bf16 on a CPU with AVX512-BF16, and the reference below runs in fp32
    embed = _models.load_embed_model(tiny_model_path, precision="fp32")
    assert (embed.query_instruction, embed.text_instruction) == ("query: ", "passage: ")
    st = _models.load_sentence_transformer(tiny_model_path, device="cpu")
    want = st.encode(["query: who?"], normalize_embeddings=True)[0]
    assert np.allclose(embed.get_query_embedding("who?"), want, atol=1e-5)


# -- precision and batches ------------------------------------------------------------------


def _dtype(embed):
    return next(embed._model.parameters()).dtype


def test_precision_auto_is_bf16_only_where_the_hardware_computes_in_it(tiny_model_path,
                                                                       monkeypatch):  # fmt: skip
    import torch

    monkeypatch.setattr(_models, "native_bf16", lambda device="cpu": True)
    assert _dtype(_models.load_embed_model(tiny_model_path)) == torch.bfloat16
    monkeypatch.setattr(_models, "native_bf16", lambda device="cpu": False)
    assert _dtype(_models.load_embed_model(tiny_model_path)) == torch.float32


def test_a_precision_can_be_forced_and_vectors_stay_floats(tiny_model_path):
    import numpy as np
    import torch

    fp32 = _models.load_embed_model(tiny_model_path, precision="fp32")
    bf16 = _models.load_embed_model(tiny_model_path, precision="bf16")
    assert (_dtype(fp32), _dtype(bf16)) == (torch.float32, torch.bfloat16)
    text = "Lyft was founded in 2012 and connects riders with drivers."
    a, b = np.array(fp32.get_text_embedding(text)), np.array(bf16.get_text_embedding(text))
    assert isinstance(b[0], float) or b.dtype == np.float64
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99
    assert _models.model_fingerprint(fp32) == _models.model_fingerprint(bf16)  # same model
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        _models.load_embed_model(tiny_model_path, precision="int8")


def test_serving_json_sets_the_precision_unless_told(tiny_model_path):
    import torch

    (tiny_model_path / "serving.json").write_text(json.dumps({"precision": "bf16"}))
    assert _dtype(_models.load_embed_model(tiny_model_path)) == torch.bfloat16
    assert _dtype(_models.load_embed_model(tiny_model_path, precision="fp32")) == torch.float32
    (tiny_model_path / "serving.json").write_text(json.dumps({"precision": "int4"}))
    with pytest.raises(ValueError, match="serving.json's precision must be one of"):
        _models.load_embed_model(tiny_model_path)
    (tiny_model_path / "serving.json").write_text("{not json")
    with pytest.raises(ValueError, match="serving.json is not readable JSON"):
        _models.load_embed_model(tiny_model_path)


def test_texts_are_embedded_in_batches_of_64_unless_told(tiny_model_path):
    assert _models.load_embed_model(tiny_model_path).embed_batch_size == _models.EMBED_BATCH_SIZE
    assert _models.load_embed_model(tiny_model_path, embed_batch_size=8).embed_batch_size == 8
