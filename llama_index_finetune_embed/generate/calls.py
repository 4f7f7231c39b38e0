"""What one LLM call raised or returned: error kinds, ``Retry-After``, token usage (private).

Works for any LlamaIndex LLM: HTTP details are read duck-typed from the exception (``openai``,
``httpx`` and most SDKs expose ``status_code`` or ``response.status_code``/``headers``).
"""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal["fatal", "chunk", "rate_limit", "transient"]

_FATAL_STATUS = frozenset({401, 403, 404})  # wrong key/model: every later call fails the same
_CHUNK_STATUS = frozenset({400, 413, 422})  # this request is bad (too long...): retrying won't help
_FATAL_TYPES = (TypeError, AttributeError, NotImplementedError)  # bugs, not weather


def error_kind(exc: BaseException) -> ErrorKind:
    """``fatal`` (stop the run), ``chunk`` (give this chunk up), or retryable.

    Retryable: 429 (``rate_limit``), and ``transient`` for 5xx, 408/409, timeouts, connection
    errors and anything unknown (an LLM wrapper's own exception types).
    """
    status = status_code(exc)
    if status in _FATAL_STATUS or isinstance(exc, _FATAL_TYPES):
        return "fatal"
    if status in _CHUNK_STATUS:
        return "chunk"
    return "rate_limit" if status == 429 else "transient"


def status_code(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_seconds(exc: BaseException) -> float:
    """The server's ``Retry-After`` in seconds (0 when absent or not a number)."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return max(0.0, float(headers.get("retry-after", 0) or 0))
    except (TypeError, ValueError):  # an HTTP date: fall back to our own backoff
        return 0.0


def describe_error(exc: BaseException) -> str:
    """One line for ``failed_chunks`` and logs: type, HTTP status, message (capped)."""
    status = status_code(exc)
    text = f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def token_usage(response: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a CompletionResponse, if the LLM reported them."""
    extra = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in extra or "completion_tokens" in extra:
        return int(extra.get("prompt_tokens") or 0), int(extra.get("completion_tokens") or 0)
    raw = getattr(response, "raw", None)
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if usage is not None and hasattr(usage, "prompt_tokens"):
        return int(usage.prompt_tokens or 0), int(getattr(usage, "completion_tokens", 0) or 0)
    return None
