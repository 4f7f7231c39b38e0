"""One LLM call: one request (:func:`without_retries`), and what it raised or returned: error
kinds, ``Retry-After``, token usage (private).

Works for any LlamaIndex LLM: HTTP details are read duck-typed from the exception (``openai``,
``httpx`` and most SDKs expose ``status_code`` or ``response.status_code``/``headers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

ErrorKind = Literal["fatal", "chunk", "rate_limit", "transient"]

_FATAL_STATUS = frozenset({401, 403, 404})  # wrong key/model: every later call fails the same
_CHUNK_STATUS = frozenset({400, 413, 422})  # this request is bad (too long...): retrying won't help
_FATAL_TYPES = (TypeError, AttributeError, NotImplementedError)  # bugs, not weather


def without_retries(llm: Any) -> Any | None:
    """Return a copy of ``llm`` that makes one request per call, or None where none is safe.

    The copy has ``max_retries=0``, and so do the SDK clients the LLM has cached (``openai`` and
    ``anthropic`` clients make one with ``with_options``; one not built yet is built from the
    copy's fields). Safe: a pydantic LLM whose ``max_retries`` field accepts 0. ``llm`` itself,
    its fields and its clients are left as they are.

    Example:
        >>> from llama_index.llms.openai import OpenAI
        >>> llm = OpenAI(model="gpt-4o-mini", api_key="sk-...")
        >>> without_retries(llm).max_retries, llm.max_retries
        (0, 3)
    """
    field = getattr(type(llm), "model_fields", {}).get("max_retries")
    if field is None or not _accepts_zero(field.metadata):
        return None
    copy = llm.model_copy(update={"max_retries": 0})  # shallow: shares the cached clients
    # The cached clients are private attributes of the copy; each gets a copy of its own.
    for name, client in (getattr(copy, "__pydantic_private__", None) or {}).items():
        retries = getattr(client, "max_retries", None)
        if not isinstance(retries, int) or retries <= 0:
            continue
        if not callable(getattr(client, "with_options", None)):
            return None  # a client we cannot copy would still retry on its own
        setattr(copy, name, client.with_options(max_retries=0))
    return copy


def _accepts_zero(constraints: list[Any]) -> bool:
    """Whether 0 meets a field's ``ge``/``gt`` bounds (``Field(ge=0)`` does; ``gt=0`` does not)."""
    for bound in constraints:
        ge, gt = getattr(bound, "ge", None), getattr(bound, "gt", None)
        if (ge is not None and ge > 0) or (gt is not None and gt >= 0):
            return False
    return True


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


def is_congestion(exc: BaseException) -> bool:
    """A timeout or an overloaded server (503, 529): fewer calls in flight would help."""
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return True
    return status_code(exc) in (503, 529)


def status_code(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_seconds(exc: BaseException) -> float:
    """The server's wait in seconds: ``retry-after-ms``, else ``Retry-After`` (0 when absent or
    an HTTP date, which falls back to our own backoff)."""
    headers = response_headers(exc)
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name) or "nan") * scale
        except (TypeError, ValueError):
            continue
        if value == value:  # not NaN
            return max(0.0, value)
    return 0.0


def response_headers(exc: BaseException) -> Mapping[str, str]:
    """The HTTP headers an exception's response carries (case-insensitive where the SDK's are)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers if isinstance(headers, Mapping) or hasattr(headers, "get") else {}


class RateLimits(NamedTuple):
    """What ``x-ratelimit-*`` headers said: per-minute limits, what is left, seconds to reset."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None


def rate_limits(headers: Mapping[str, str]) -> RateLimits:
    """Parse OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers.

    Example:
        >>> limits = rate_limits({"x-ratelimit-limit-requests": "600",
        ...                       "x-ratelimit-reset-requests": "1m2.5s"})
        >>> limits.limit_requests, limits.reset_requests, limits.limit_tokens
        (600.0, 62.5, None)
    """
    values: dict[str, float | None] = {}
    for field in RateLimits._fields:
        kind, what = field.split("_")
        raw = headers.get(f"x-ratelimit-{kind}-{what}")
        values[field] = _duration(raw) if kind == "reset" else _number(raw)
    return RateLimits(**values)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(raw: Any) -> float | None:
    """``"6m0s"``, ``"1.5s"``, ``"20ms"`` or plain seconds -> seconds."""
    if raw is None:
        return None
    text = str(raw).strip()
    number = _number(text)
    if number is not None:
        return number
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value == value and value >= 0 else None


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
