"""A local OpenAI-compatible chat-completions server for tests and benchmarks (stdlib only).

It also answers ``POST /v1/embeddings`` with deterministic bag-of-words vectors (each word
hashed to one of ``EMBED_DIM`` dimensions), recording every input text in ``embedded``.

It listens on 127.0.0.1 only, on a free port, answers ``POST /v1/chat/completions`` after a
configurable delay with a deterministic list of questions about the chunk in the prompt, and
injects faults at a configurable rate: 429 (with ``Retry-After``), 500/503, hung requests
(timeouts), dropped connections and garbage answers (preambles, refusals, answers, copies of the
chunk, torn JSON). It reports ``usage`` token counts and keeps per-chunk counters so tests can
check exactly what reached it. Each answer format (numbered, bullets, "Question 1:", JSON) is
picked per chunk, so the real client + parser path sees them all.

Example:
    >>> with FakeOpenAIServer(delay=0.2, fault_rate=0.3) as server:  # doctest: +SKIP
    ...     llm = server.llm()  # llama_index.llms.openai.OpenAI(api_base=server.url, max_retries=0)
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "garbage")
EMBED_DIM = 64
_WORDS = re.compile(r"[a-z0-9]+")
_CONTEXT = re.compile(r"-{5,}\n(.*?)\n-{5,}", re.DOTALL)
_NUM = re.compile(r"(\d+) questions")


def chunk_key(context: str) -> str:
    """The server's id for a chunk: a short hash of its text (tests compute it from nodes)."""
    return hashlib.sha256(context.strip().encode("utf-8")).hexdigest()[:16]


def extract_context(prompt: str) -> str:
    """The chunk text between the prompt's dashed lines, or the whole prompt."""
    match = _CONTEXT.search(prompt)
    return (match.group(1) if match else prompt).strip()


def questions_for(context: str, n: int) -> list[str]:
    """The deterministic questions the server writes for ``context``."""
    key = chunk_key(context)
    words = sorted(set(re.findall(r"[A-Za-z]{4,}", context)), key=lambda w: chunk_key(key + w))
    out = []
    for i in range(n):
        if len(words) >= 2 * n:
            out.append(f"What does the passage say about {words[2 * i]} and {words[2 * i + 1]}?")
        else:
            out.append(f"What is described in passage {key[:8]}, point {i + 1}?")
    return out


def format_answer(questions: list[str], context: str) -> str:
    """Render ``questions`` in one of the formats real LLMs use (picked by the chunk's hash)."""
    style = int(chunk_key(context), 16) % 6
    if style == 0:
        return "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
    if style == 1:
        body = "\n".join(f"{i}) {q}" for i, q in enumerate(questions, 1))
        return f"Sure! Here are {len(questions)} questions based on the context:\n\n{body}"
    if style == 2:
        return "\n\n".join(f"Question {i}:\n{q}" for i, q in enumerate(questions, 1))
    if style == 3:
        return "\n".join(f"- {q}" for q in questions)
    if style == 4:
        return "```json\n" + json.dumps(questions, indent=2) + "\n```"
    return "\n".join(f"**Q{i}:** {q}" for i, q in enumerate(questions, 1))


def garbage_for(context: str, rng: random.Random) -> str:
    """An unusable answer: nothing in it may become a query."""
    first = re.split(r"(?<=[.!?])\s", context.strip())[0].rstrip(".!?")
    return rng.choice(
        [
            "Sure! Here you go:",
            "",
            "I'm sorry, but I can't help with that.",
            f"Answer: {first}.",
            f"1. {first}?",  # a sentence of the chunk copied as a "question"
            '{"questions": [',
            "Here are the questions:\n\n",
        ]
    )


class FakeOpenAIServer:
    """Threaded HTTP server speaking enough of the OpenAI API for ``llms.openai.OpenAI``.

    Args:
        delay: Seconds before each answer (successes and garbage; error statuses come at once).
        fault_rate: Probability that a request gets a fault instead of a good answer.
        faults: Which fault kinds to draw from (see ``FAULT_KINDS``).
        hang: Seconds a "timeout" request hangs before the server closes it unanswered.
        force_status: Answer every request with this HTTP status (e.g. 401) instead.
        max_requests: Safety bound; later requests get 503 and the run cannot spin forever.
        seed: Seed of the fault draws.
        rps: Requests per second the server takes, as the API enforces its per-minute limits: a
            token bucket holding ``burst`` seconds of them, refilled continuously; beyond it a
            request gets 429 at once with ``Retry-After``/``retry-after-ms`` (when the next one
            fits) and ``x-ratelimit-*`` headers, which every answer also carries.
        tpm: Tokens per minute, the same way (a request's prompt words when it arrives, its
            completion words when answered; usage counts words as tokens).
        burst: Seconds of the rate the buckets hold.
        limit_headers: Send the ``x-ratelimit-*`` headers (off: ``Retry-After`` only).
        refuse_first: Answer this many requests first with 429 (``retry-after-ms: 1``), as the
            rate limits do; ``refuse_next`` counts them down and a test may set it again.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULT_KINDS,
        hang: float = 1.0,
        force_status: int | None = None,
        max_requests: int = 20_000,
        seed: int = 0,
        rps: float | None = None,
        tpm: float | None = None,
        burst: float = 1.0,
        limit_headers: bool = True,
        refuse_first: int = 0,
    ) -> None:
        unknown = set(faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {FAULT_KINDS}")
        self.delay, self.fault_rate, self.faults, self.hang = delay, fault_rate, faults, hang
        self.force_status, self.max_requests = force_status, max_requests
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # chunk key -> requests received
        self.successes: Counter[str] = Counter()  # chunk key -> good answers sent
        self.fault_counts: Counter[str] = Counter()  # fault kind -> count
        self.valid_questions: set[str] = set()
        self.prompt_tokens = self.completion_tokens = 0
        self.in_flight = self.max_in_flight = 0
        self.embedded: list[str] = []  # every text sent to /v1/embeddings, in order
        self.rps, self.tpm, self.burst, self.limit_headers = rps, tpm, burst, limit_headers
        self.refuse_next = refuse_first
        self._requests_left = (rps or 0) * burst
        self._tokens_left = (tpm or 0) / 60 * burst
        self._refilled = time.monotonic()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def llm(self, *, timeout: float = 10.0, **kwargs: Any):
        """A real ``llama_index.llms.openai.OpenAI`` client pointed at this server."""
        from llama_index.llms.openai import OpenAI

        kwargs.setdefault("max_retries", 0)  # count every attempt in the code under test
        return OpenAI(
            model="gpt-4o-mini", api_key="test", api_base=self.url, timeout=timeout, **kwargs
        )

    def snapshot(self) -> dict[str, Any]:
        """A copy of the counters (taken under the lock)."""
        with self._lock:
            return {
                "requests": Counter(self.requests),
                "successes": Counter(self.successes),
                "faults": Counter(self.fault_counts),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "max_in_flight": self.max_in_flight,
                "rate_limited": self.fault_counts["rate_limited"],
            }

    # -- one request -------------------------------------------------------------------------

    def _decide(self, key: str, prompt_tokens: int = 0) -> str:
        with self._lock:
            self.requests[key] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if sum(self.requests.values()) > self.max_requests:
                kind = "over_limit"
            elif self.refuse_next > 0:
                self.refuse_next -= 1
                kind = "rate_limited"
            elif not self._admit(prompt_tokens):
                kind = "rate_limited"
            elif self.force_status is not None:
                kind = f"status:{self.force_status}"
            elif self._rng.random() < self.fault_rate:
                kind = self._rng.choice(self.faults)
            else:
                kind = "ok"
            if kind != "ok":
                self.fault_counts[kind] += 1
            return kind

    # -- rate limits (called under the lock) ---------------------------------------------------

    def _refill(self) -> float:
        now = time.monotonic()
        elapsed, self._refilled = now - self._refilled, now
        if self.rps:
            full = self.rps * self.burst
            self._requests_left = min(full, self._requests_left + elapsed * self.rps)
        if self.tpm:
            per_s = self.tpm / 60
            self._tokens_left = min(per_s * self.burst, self._tokens_left + elapsed * per_s)
        return now

    def _admit(self, prompt_tokens: int) -> bool:
        self._refill()
        if (self.rps and self._requests_left < 1) or (self.tpm and self._tokens_left < 0):
            return False
        self._requests_left -= 1
        self._tokens_left -= prompt_tokens
        return True

    def _charge(self, tokens: int) -> None:
        with self._lock:
            self._tokens_left -= tokens

    def limit_headers_now(self, *, refused: bool) -> dict[str, str]:
        """``x-ratelimit-*`` (and, when refused, when to come back) as the API sends them."""
        with self._lock:
            self._refill()
            wait = 0.0
            headers: dict[str, str] = {}
            if self.rps:
                reset = max(0.0, 1 - self._requests_left) / self.rps
                wait = max(wait, reset)
                headers.update({
                    "x-ratelimit-limit-requests": str(round(self.rps * 60)),
                    "x-ratelimit-remaining-requests": str(max(0, int(self._requests_left))),
                    "x-ratelimit-reset-requests": f"{reset:.3f}s",
                })  # fmt: skip
            if self.tpm:
                reset = max(0.0, -self._tokens_left) / (self.tpm / 60)
                wait = max(wait, reset)
                headers.update({
                    "x-ratelimit-limit-tokens": str(round(self.tpm)),
                    "x-ratelimit-remaining-tokens": str(max(0, int(self._tokens_left))),
                    "x-ratelimit-reset-tokens": f"{reset:.3f}s",
                })  # fmt: skip
        if not self.limit_headers:
            headers = {}
        if refused:
            headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return headers

    def _answer(self, kind: str, key: str, prompt: str, context: str) -> str:
        with self._lock:
            if kind == "garbage":
                return garbage_for(context, self._rng)
            match = _NUM.search(prompt)
            questions = questions_for(context, int(match.group(1)) if match else 2)
            self.successes[key] += 1
            self.valid_questions.update(questions)
        return format_answer(questions, context)

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """An ``/v1/embeddings`` answer: bag-of-words vectors (base64 float32 when asked, as the
        openai client asks by default)."""
        import base64
        import struct

        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self._lock:
            self.embedded.extend(texts)
        data = []
        for i, text in enumerate(texts):
            vec = [0.0] * EMBED_DIM
            for word in _WORDS.findall(str(text).lower()):
                vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % EMBED_DIM] += 1.0
            vec[0] += 1e-3  # never the zero vector
            value: Any = vec
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{EMBED_DIM}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(str(t).split()) for t in texts)
        return {"object": "list", "data": data, "model": body.get("model", "fake"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    def _count_usage(self, prompt: str, content: str) -> dict[str, int]:
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            self.prompt_tokens += usage["prompt_tokens"]
            self.completion_tokens += usage["completion_tokens"]
        return usage

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog (5) drops connects when 16 workers start
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, killed process) is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections cannot pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """``GET /v1/stats``: the counters, for a server running in another process."""
        if not self.path.rstrip("/").endswith("/stats"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        snap = self.fake.snapshot()
        self._send(200, {**snap, "valid_questions": sorted(self.fake.valid_questions)})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path.rstrip("/").endswith("/embeddings"):
            self._send(200, self.fake.embeddings(body))
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        messages = body.get("messages") or [{}]
        prompt = str(messages[-1].get("content", ""))
        context = extract_context(prompt)
        key = chunk_key(context)
        kind = self.fake._decide(key, len(prompt.split()))
        try:
            self._respond(kind, key, body, prompt, context)
        finally:
            self.fake._done()

    def _respond(self, kind: str, key: str, body: dict, prompt: str, context: str) -> None:
        limited = self.fake.rps is not None or self.fake.tpm is not None
        if kind == "rate_limited":
            headers = self.fake.limit_headers_now(refused=True)
            error = {"message": "Rate limit reached", "code": "rate_limit_exceeded"}
            self._send(429, {"error": {**error, "type": "requests"}}, headers)
            return
        if kind in ("429", "500", "503", "over_limit") or kind.startswith("status:"):
            status = {"429": 429, "500": 500, "503": 503, "over_limit": 503}.get(kind)
            status = status or int(kind.split(":")[1])
            headers = {"Retry-After": "0"} if status == 429 else {}
            self._send(status, {"error": {"message": f"injected {kind}", "type": kind}}, headers)
            return
        if kind in ("timeout", "drop"):
            if kind == "timeout":
                time.sleep(self.fake.hang)
            self.close_connection = True
            return
        time.sleep(self.fake.delay)
        content = self.fake._answer(kind, key, prompt, context)
        usage = self.fake._count_usage(prompt, content)
        self.fake._charge(usage["completion_tokens"])
        headers = self.fake.limit_headers_now(refused=False) if limited else None
        self._send(200, _completion(body.get("model", "gpt-4o-mini"), content, usage), headers)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _completion(model: str, content: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def main(argv: list[str] | None = None) -> None:
    """Serve in this process until stdin closes: prints the API base URL on the first line.

    Benchmarks run the server in its own process so it does not share a GIL with the client.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="local OpenAI-compatible fake server")
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--hang", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", nargs="+", default=list(FAULT_KINDS), choices=FAULT_KINDS)
    parser.add_argument("--rps", type=float, default=None, help="requests per second it takes")
    parser.add_argument("--tpm", type=float, default=None, help="tokens per minute it takes")
    parser.add_argument("--no-limit-headers", action="store_true", help="Retry-After only")
    parser.add_argument("--max-requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    with FakeOpenAIServer(
        delay=args.delay, fault_rate=args.fault_rate, hang=args.hang, seed=args.seed,
        faults=tuple(args.faults), rps=args.rps, tpm=args.tpm,
        limit_headers=not args.no_limit_headers, max_requests=args.max_requests,
    ) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # returns when the parent closes our stdin or exits


if __name__ == "__main__":
    main()
