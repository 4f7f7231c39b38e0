from __future__ import annotations

import numpy as np
import pytest

from llama_index_finetune_embed import embeddings as _models
from llama_index_finetune_embed._windowed import split_into_windows

MAX = 16  # tokens the model reads at once: [CLS] + 14 content tokens + [SEP]


@pytest.fixture
def models(tiny_model_path):
    # fp32: "auto" is bf16 on a CPU with AVX512-BF16; the references here compute in fp32
    window = _models.load_embed_model(tiny_model_path, max_length=MAX, long_texts="window",
                                      precision="fp32")  # fmt: skip
    truncate = _models.load_embed_model(tiny_model_path, max_length=MAX, long_texts="truncate",
                                        precision="fp32")  # fmt: skip
    return window, truncate


def _encode(embed, texts):
    """The model's own vectors for whole texts that fit its window (no windowing involved)."""
    return embed._model.encode(texts, prompt_name="text", normalize_embeddings=True)


def _single_token(embed, word):
    assert len(embed._model.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1
    return word


@pytest.fixture
def plain(tiny_model_path):
    """What LlamaIndex itself gives: the real ``HuggingFaceEmbedding``, not our subclass."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(tiny_model_path), max_length=MAX, device="cpu")


def test_text_that_fits_is_embedded_exactly_as_huggingface_embedding(models, plain):
    window, truncate = models
    text = "Lyft was founded in 2012."
    want = plain.get_text_embedding(text)
    assert np.allclose(window.get_text_embedding(text), want, atol=1e-6)
    assert np.allclose(truncate.get_text_embedding(text), want, atol=1e-6)
    query = "When was Lyft founded?"
    want_q = plain.get_query_embedding(query)
    assert np.allclose(window.get_query_embedding(query), want_q, atol=1e-6)


def test_truncate_mode_is_huggingface_embedding_on_long_texts(models, plain):
    _, truncate = models
    long = " ".join(["lyft"] * 14 + ["uber"] * 20)
    assert np.allclose(truncate.get_text_embedding(long), plain.get_text_embedding(long), atol=1e-6)
    batch = ["uber drivers", long, "revenue grew"]
    assert np.allclose(
        truncate.get_text_embedding_batch(batch), plain.get_text_embedding_batch(batch), atol=1e-6
    )


def test_long_text_is_the_token_weighted_mean_of_its_windows(models):
    window, truncate = models
    a, b = _single_token(window, "lyft"), _single_token(window, "uber")
    text = " ".join([a] * 14 + [b] * 20)  # windows: 14 x a | 14 x b | 6 x b
    parts = _encode(window, [" ".join([a] * 14), " ".join([b] * 14), " ".join([b] * 6)])
    want = 14 * parts[0] + 14 * parts[1] + 6 * parts[2]
    want /= np.linalg.norm(want)
    got = np.asarray(window.get_text_embedding(text))
    assert np.allclose(got, want, atol=1e-5)
    # truncation keeps only the first window, so the b-words change nothing
    assert np.allclose(truncate.get_text_embedding(text), parts[0], atol=1e-5)
    assert not np.allclose(got, parts[0], atol=1e-3)


def test_batch_of_short_and_long_texts_keeps_order(models):
    window, _ = models
    long = " ".join(["lyft"] * 30)
    texts = ["uber drivers", long, "revenue grew"]
    batch = window.get_text_embedding_batch(texts)
    singles = [window.get_text_embedding(t) for t in texts]
    assert np.allclose(batch, singles, atol=1e-5)


def test_queries_are_never_windowed(models):
    window, truncate = models
    query = " ".join(["lyft"] * 30) + " ?"
    assert np.allclose(window.get_query_embedding(query), truncate.get_query_embedding(query))


def test_document_prompt_leaves_room_in_every_window(tiny_model_path):
    import json

    cfg = tiny_model_path / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"] = {"query": "query: ", "document": "passage of text: "}
    cfg.write_text(json.dumps(data))
    embed = _models.load_embed_model(tiny_model_path, max_length=MAX, precision="fp32")
    tokenizer = embed._model.tokenizer
    prompt_tokens = len(tokenizer("passage of text: ", add_special_tokens=False)["input_ids"])
    room = embed._window_tokens()
    assert room == MAX - 2 - prompt_tokens
    text = " ".join(["lyft"] * 40)
    for piece, weight in split_into_windows(tokenizer, text, room):
        assert len(tokenizer("passage of text: " + piece)["input_ids"]) <= MAX
        assert weight == len(tokenizer(piece, add_special_tokens=False)["input_ids"])


def test_split_returns_a_text_that_fits_whole():
    class Tok:
        def __call__(self, text, **kwargs):
            spans, start = [], 0
            for word in text.split(" "):
                spans.append((start, start + len(word)))
                start += len(word) + 1
            return {"offset_mapping": spans}

    assert split_into_windows(Tok(), "a b c", 3) == [("a b c", 1.0)]
    assert split_into_windows(Tok(), "a bb c dd e", 2) == [("a bb", 2.0), ("c dd", 2.0), ("e", 1.0)]


def test_unknown_long_texts_mode_is_one_clear_error(tiny_model_path):
    with pytest.raises(ValueError, match="long_texts must be 'window' or 'truncate'"):
        _models.load_embed_model(tiny_model_path, long_texts="chop")


def test_without_a_fast_tokenizer_long_texts_are_truncated_with_one_warning(
    models, monkeypatch, caplog
):
    window, truncate = models
    monkeypatch.setattr(type(window._model.tokenizer), "is_fast", False)
    long = " ".join(["lyft"] * 14 + ["uber"] * 20)
    with caplog.at_level("WARNING", logger="llama_index_finetune_embed._windowed"):
        first = window.get_text_embedding(long)
        window.get_text_embedding_batch([long, "uber drivers"])
    assert np.allclose(first, truncate.get_text_embedding(long), atol=1e-5)
    assert sum("needs a fast tokenizer" in r.getMessage() for r in caplog.records) == 1
