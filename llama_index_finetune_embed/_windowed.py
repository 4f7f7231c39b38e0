"""A ``HuggingFaceEmbedding`` that embeds chunks longer than the model's window in full (private).

LlamaIndex chunks are often longer than small embedding models can read (the default chunk is
1,024 tokens; MiniLM and bge-small take 512 word pieces), and the model silently drops the rest.
Here a long chunk is cut into consecutive windows that each fit, every window is embedded as
usual, and the chunk's vector is the mean of the window vectors weighted by their token counts:
for mean-pooling models that is mean pooling over every token of the chunk, each window read by
its own attention. A text that fits is embedded exactly as by ``HuggingFaceEmbedding``, and
queries are never cut (they go through the query path unchanged).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from pydantic import Field, PrivateAttr

logger = logging.getLogger(__name__)

LongTexts = Literal["window", "truncate"]


class WindowedHuggingFaceEmbedding(HuggingFaceEmbedding):
    """``HuggingFaceEmbedding`` whose document side reads texts longer than ``max_length`` whole.

    ``long_texts="window"``: token-weighted mean of consecutive windows (see the module docs);
    ``"truncate"``: exactly ``HuggingFaceEmbedding`` (the model sees the first ``max_length``
    tokens).

    Example:
        >>> embed = WindowedHuggingFaceEmbedding(model_name="path/to/model")  # doctest: +SKIP
        >>> embed.get_text_embedding("a 2,000-token chunk ...")  # doctest: +SKIP
    """

    long_texts: LongTexts = Field(
        default="window", description="'window': embed long chunks whole; 'truncate': cut them"
    )
    window_length: int | None = Field(
        default=None,
        description="tokens per window in build_window_index (None: max_length); a finetuned "
        "model records its own in serving.json",
    )
    _warned: bool = PrivateAttr(default=False)

    def __init__(
        self,
        *args: Any,
        long_texts: LongTexts = "window",
        window_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        if long_texts not in ("window", "truncate"):
            raise ValueError(f"long_texts must be 'window' or 'truncate', got {long_texts!r}")
        if window_length is not None and window_length < 8:
            raise ValueError(f"window_length must be at least 8 tokens, got {window_length!r}")
        super().__init__(*args, **kwargs)
        self.long_texts, self.window_length = long_texts, window_length

    @classmethod
    def class_name(cls) -> str:
        return "WindowedHuggingFaceEmbedding"

    def _embed(self, inputs: list[Any], prompt_name: str | None = None) -> list[list[float]]:
        if prompt_name != "text" or self.long_texts != "window" or not inputs:
            return super()._embed(inputs, prompt_name)
        room = self._window_tokens()
        if room is None:
            return super()._embed(inputs, prompt_name)
        pieces, owners, weights = [], [], []
        for index, text in enumerate(inputs):
            for piece, weight in split_into_windows(self._model.tokenizer, text, room):
                pieces.append(piece)
                owners.append(index)
                weights.append(weight)
        if len(pieces) == len(inputs):  # nothing was too long
            return super()._embed(inputs, prompt_name)
        vectors = np.asarray(super()._embed(pieces, prompt_name), dtype=np.float64)
        pooled = np.zeros((len(inputs), vectors.shape[1]))
        np.add.at(pooled, np.asarray(owners), vectors * np.asarray(weights)[:, None])
        pooled /= np.bincount(owners, weights=weights, minlength=len(inputs))[:, None]
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.tolist()

    def _window_tokens(self) -> int | None:
        """Content tokens per window: the model's length less special tokens and the prompt."""
        tokenizer = getattr(self._model, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            if not self._warned:  # _embed runs once per embed batch: say it once
                logger.warning("long_texts='window' needs a fast tokenizer; truncating long texts")
                self._warned = True
            return None
        if self._model.max_seq_length is None:  # no length limit: nothing is cut
            return None
        prompt = (self._model.prompts or {}).get("text") or ""
        used = tokenizer.num_special_tokens_to_add(pair=False)
        if prompt:
            used += len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        room = int(self._model.max_seq_length) - used
        return room if room > 0 else None


def split_into_windows(tokenizer: Any, text: str, room: int) -> list[tuple[str, float]]:
    """``text`` as consecutive pieces of at most ``room`` tokens, each with its token count.

    A text that fits is returned whole (weight 1). Pieces are cut at token boundaries of the
    original text, so each one re-tokenizes to (nearly) the same tokens.

    Example:
        >>> split_into_windows(tokenizer, "one two three", room=2)  # doctest: +SKIP
        [('one two', 2.0), ('three', 1.0)]
    """
    offsets = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )["offset_mapping"]
    if len(offsets) <= room:
        return [(text, 1.0)]
    return [
        (text[span[0][0] : span[-1][1]], float(len(span)))
        for span in (offsets[start : start + room] for start in range(0, len(offsets), room))
    ]
