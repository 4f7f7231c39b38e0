"""How many LLM calls may be in flight and how fast they may start, learned from the server.

:class:`Pacer` is asked before every call (:meth:`Pacer.acquire`) and told how it went
(:meth:`Pacer.release`). Two controls, both client-side throttling as TCP and Google SRE's
adaptive throttling do it:

* **Calls in flight** (a congestion window): it starts at ``start_in_flight`` and doubles each
  round trip while calls succeed (slow start), then grows by one per round trip; a 429 or a
  timeout halves it (at most once per round trip). Never above ``max_in_flight``, which bounds
  memory and connections at any corpus size. Starts are spread over the round trip (the
  window's rate), so a window that grew past a limit meets it one call at a time, not in a burst.
* **Start rate** (requests per second): unpaced until the server refuses a call; then paced at
  a little below the rate the server was accepting, probing upwards by 1% per success and cut
  again on the next refusal. A user's ``max_rpm`` / ``max_tpm`` (tokens: the calls' observed
  usage, estimated from prompt length before any is seen) and limits the server announces in
  ``x-ratelimit-limit-*`` headers cap it from the start. ``Retry-After`` (and a
  ``x-ratelimit-remaining-*`` of 0 with its reset time) pauses every start until then.

Works for any LlamaIndex LLM: those whose errors carry no headers are paced from 429s alone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from llama_index_finetune_embed.generate.calls import RateLimits

Outcome = Literal["ok", "refused", "timeout", "error", "cancelled"]

_WINDOW_S = 2.0  # how far back the accepted rate is measured
_BACKOFF = 0.9  # pace at this share of the rate the server accepted when it refused
_PROBE = 0.01  # each success raises the paced rate by this share
_LIMIT_SHARE = 0.97  # of a limit the server announced: headroom for clock and burst skew
_MIN_RATE = 0.05  # requests per second: never pace slower than one call per 20 s


class Pacer:
    """Admission for LLM calls: a window of calls in flight and a learned start rate.

    Example:
        >>> pacer = Pacer(max_in_flight=64, max_rpm=600)
        >>> async def call():
        ...     await pacer.acquire(tokens=500)
        ...     pacer.release("ok", tokens=520)
        >>> asyncio.run(call()); pacer.in_flight
        0
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        start_in_flight: int = 16,
        max_rpm: float | None = None,
        max_tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.window = float(min(start_in_flight, max_in_flight))
        self.slow_start = self.window < max_in_flight
        self.user_rps = max_rpm / 60 if max_rpm else None
        self.user_tps = max_tpm / 60 if max_tpm else None
        self.server_rps: float | None = None  # announced in x-ratelimit-limit-requests
        self.server_tps: float | None = None  # announced in x-ratelimit-limit-tokens
        self.learned_rps: float | None = None  # None: unpaced until a refusal
        self.clock = clock
        self.in_flight = 0
        self.tokens_per_call: float | None = None  # mean of observed usage
        self.next_start = 0.0
        self.pause_until = 0.0
        self._last_cut = -math.inf
        self._congested = False  # the server refused a call or timed out
        self._latency: float | None = None  # seconds, a running mean of successful calls
        self._accepted: deque[float] = deque()  # end times of recent successes
        self._started: dict[int, float] = {}
        self._first_start: float | None = None
        self._tickets = 0
        self._changed = asyncio.Event()

    # -- asked before each call ----------------------------------------------------------------

    async def acquire(self, *, tokens: float = 0.0) -> int:
        """Wait until a call may start; returns a ticket for :meth:`release`.

        ``tokens`` is the call's estimated prompt tokens (for ``max_tpm``; the completion is
        added from what calls so far used).
        """
        while True:
            now = self.clock()
            if self.in_flight >= int(self.window):
                self._changed.clear()
                await self._changed.wait()
                continue
            start_at = max(self.next_start, self.pause_until)
            if start_at <= now:
                self.in_flight += 1
                self.next_start = max(self.next_start, now) + self._interval(tokens)
                self._tickets += 1
                self._started[self._tickets] = now
                if self._first_start is None:
                    self._first_start = now
                return self._tickets
            await asyncio.sleep(start_at - now)

    def _interval(self, tokens: float) -> float:
        """Seconds between starts at the tightest of the known rates (0: unpaced)."""
        rates = [r for r in (self.user_rps, self.server_rps, self.learned_rps) if r]
        if self.slow_start or self._congested:
            # the window's own rate while it grows or after the server pushed back: starts spread
            # over a round trip (a second until one is timed), so a window past a limit meets it
            # one call at a time, not in a burst. Otherwise calls start as slots free up (a local
            # LLM batches the calls that arrive together).
            rates.append(self.window / (self._latency or 1.0))
        per_call = self.tokens_per_call if self.tokens_per_call is not None else tokens
        for tps in (self.user_tps, self.server_tps):
            if tps and per_call:
                rates.append(tps / per_call)
        return 1.0 / max(min(rates), _MIN_RATE) if rates else 0.0

    # -- told after each call ------------------------------------------------------------------

    def release(
        self,
        outcome: Outcome,
        ticket: int | None = None,
        *,
        tokens: int | None = None,
        retry_after: float = 0.0,
        limits: RateLimits | None = None,
    ) -> None:
        """Record how a call went: ``ok``, ``refused`` (429), ``timeout``, ``error``, or
        ``cancelled`` (admitted, then not made)."""
        now = self.clock()
        started = self._started.pop(ticket, None) if ticket is not None else None
        self.in_flight = max(0, self.in_flight - 1)
        if limits is not None:
            self._learn_limits(limits, now)
        if outcome == "ok":
            self._on_success(now, started, tokens)
        elif outcome in ("refused", "timeout"):
            self._on_congestion(now, refused=outcome == "refused", retry_after=retry_after)
        self._changed.set()

    def _on_success(self, now: float, started: float | None, tokens: int | None) -> None:
        self._accepted.append(now)
        self._forget_before(now - _WINDOW_S)
        if started is not None:
            took = max(1e-3, now - started)
            self._latency = took if self._latency is None else 0.8 * self._latency + 0.2 * took
        if tokens:
            mean = self.tokens_per_call
            self.tokens_per_call = tokens if mean is None else 0.9 * mean + 0.1 * tokens
        # a larger window: +1 per success in slow start (doubles per round trip), else +1/window
        self.window += 1.0 if self.slow_start else 1.0 / self.window
        if self.window >= self.max_in_flight:
            self.window, self.slow_start = float(self.max_in_flight), False
        if self.learned_rps is not None:
            self.learned_rps *= 1 + _PROBE

    def _on_congestion(self, now: float, *, refused: bool, retry_after: float) -> None:
        if refused and retry_after > 0:
            self.pause_until = max(self.pause_until, now + retry_after)
        latency = self._latency or 1.0
        if now - self._last_cut < min(latency, 1.0):
            return  # one cut per round trip: the calls already in flight left before it
        self._last_cut, self.slow_start, self._congested = now, False, True
        self.window = max(1.0, min(self.window, self.in_flight + 1) / 2)
        if refused:
            # what the server was taking: answers lately (or, before any, the calls it let in per
            # round trip)
            taking = self.accepted_rps(now) or (self.in_flight + 1) / latency
            self.learned_rps = max(_MIN_RATE, _BACKOFF * taking)
            # the rate limits now; the window only needs room for it
            room = 2 * self.learned_rps * latency
            self.window = min(float(self.max_in_flight), max(self.window, room))

    def _learn_limits(self, limits: RateLimits, now: float) -> None:
        if limits.limit_requests:
            self.server_rps = _LIMIT_SHARE * limits.limit_requests / 60
        if limits.limit_tokens:
            self.server_tps = _LIMIT_SHARE * limits.limit_tokens / 60
        for remaining, reset in ((limits.remaining_requests, limits.reset_requests),
                                 (limits.remaining_tokens, limits.reset_tokens)):  # fmt: skip
            if remaining is not None and remaining < 1 and reset:
                self.pause_until = max(self.pause_until, now + reset)

    # -- what the progress bar shows -------------------------------------------------------------

    def accepted_rps(self, now: float | None = None) -> float:
        """Calls the server answered per second over the last two seconds."""
        now = self.clock() if now is None else now
        self._forget_before(now - _WINDOW_S)
        span = min(_WINDOW_S, now - self._first_start) if self._first_start is not None else 0
        return len(self._accepted) / span if span > 0 else 0.0

    def _forget_before(self, cutoff: float) -> None:
        while self._accepted and self._accepted[0] < cutoff:
            self._accepted.popleft()
