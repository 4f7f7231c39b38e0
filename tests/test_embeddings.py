from __future__ import annotations

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
    embed = _models.load_embed_model(tiny_model_path)
    assert (embed.query_instruction, embed.text_instruction) == ("query: ", "passage: ")
    st = _models.load_sentence_transformer(tiny_model_path, device="cpu")
    want = st.encode(["query: who?"], normalize_embeddings=True)[0]
    assert np.allclose(embed.get_query_embedding("who?"), want, atol=1e-5)
