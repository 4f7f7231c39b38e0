"""generate/pacing.py: calls in flight and their rate, learned from a server that enforces limits.

The end-to-end tests run the real llama-index OpenAI client against the local server, which
refuses requests beyond its rate the way the API does (429 at once, ``Retry-After`` /
``retry-after-ms``, ``x-ratelimit-*``). How close to the limit a run gets is a benchmark's job
(benchmarks/bench_rate_limits.py); here: nothing fails, few requests are refused, no chunk is
asked again once answered.
"""

from __future__ import annotations

import asyncio

import pytest
from _fake_openai import FakeOpenAIServer
from _gen_worker import make_nodes

from llama_index_finetune_embed import generate_qa_embedding_pairs
from llama_index_finetune_embed.generate.calls import RateLimits, rate_limits, retry_after_seconds
from llama_index_finetune_embed.generate.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run(srv: FakeOpenAIServer, n: int):
    ds = generate_qa_embedding_pairs(make_nodes(n), srv.llm(timeout=30), show_progress=False)
    snap = srv.snapshot()
    return ds, snap, sum(snap["requests"].values())


@pytest.mark.parametrize("headers", [True, False], ids=["x-ratelimit headers", "Retry-After only"])
def test_a_request_rate_limit_is_met_with_few_refusals(headers):
    with FakeOpenAIServer(delay=0.2, rps=20, limit_headers=headers) as srv:
        ds, snap, sent = _run(srv, 80)
    assert not ds.failed_chunks and len(ds.corpus) == 80
    assert snap["rate_limited"] <= 0.25 * sent, (snap["rate_limited"], sent)
    assert set(snap["successes"].values()) == {1}  # no chunk asked again once answered
    assert ds.generation_stats["rate_limited"] == snap["rate_limited"]


def test_a_token_rate_limit_is_met_with_few_refusals():
    with FakeOpenAIServer(delay=0.2, tpm=60 * 1500) as srv:  # ~18 calls/s at ~80 words a call
        ds, snap, sent = _run(srv, 80)
    assert not ds.failed_chunks
    assert snap["rate_limited"] <= 0.25 * sent, (snap["rate_limited"], sent)


def test_calls_in_flight_grow_past_the_start_while_the_server_keeps_up():
    with FakeOpenAIServer(delay=0.3) as srv:
        generate_qa_embedding_pairs(make_nodes(120), srv.llm(), num_workers=40, show_progress=False)
        peak = srv.snapshot()["max_in_flight"]
        assert 32 < peak <= 40, peak  # started at 32 at most, never above num_workers


def test_user_limits_pace_starts():
    pacer = Pacer(max_in_flight=64, start_in_flight=64, max_rpm=600, max_tpm=6000)
    assert pacer._interval(tokens=0) == pytest.approx(0.1)  # 600 requests a minute
    assert pacer._interval(tokens=500) == pytest.approx(5.0)  # 100 tokens/s, 500 a call
    pacer.in_flight = 1
    pacer.release("ok", tokens=50)  # observed usage replaces the prompt-length estimate
    assert pacer._interval(tokens=500) == pytest.approx(0.5)


def test_a_refusal_paces_below_what_the_server_took_then_probes_up():
    clock = Clock()
    pacer = Pacer(max_in_flight=64, start_in_flight=8, clock=clock)
    pacer._first_start = clock.now
    for _ in range(20):  # 20 answers over 2 s: the server took 10/s
        clock.now += 0.1
        pacer.in_flight += 1
        pacer.release("ok")
    assert pacer.learned_rps is None  # paced by nothing but the window until refused
    pacer.in_flight = 1
    pacer.release("refused", retry_after=0.5)
    assert pacer.learned_rps == pytest.approx(0.9 * 10, rel=0.1)
    assert pacer.pause_until == pytest.approx(clock.now + 0.5)
    before = pacer.learned_rps
    pacer.in_flight = 1
    pacer.release("ok")
    assert pacer.learned_rps == pytest.approx(before * 1.01)


def test_one_cut_per_round_trip_and_timeouts_shrink_the_window():
    clock = Clock()
    pacer = Pacer(max_in_flight=64, start_in_flight=32, clock=clock)
    pacer.in_flight = 32
    pacer.release("timeout")
    assert pacer.window == pytest.approx(16)
    pacer.release("timeout")  # the same round trip: no second cut
    assert pacer.window == pytest.approx(16) and not pacer.slow_start
    clock.now += 2
    pacer.release("timeout")
    assert pacer.window < 16


def test_slow_start_doubles_up_to_max_in_flight():
    pacer = Pacer(max_in_flight=20, start_in_flight=4)
    for _ in range(4):
        pacer.in_flight += 1
        pacer.release("ok")
    assert pacer.window == 8
    for _ in range(50):
        pacer.in_flight += 1
        pacer.release("ok")
    assert pacer.window == 20 and not pacer.slow_start


def test_announced_limits_cap_the_rate_and_an_empty_bucket_pauses():
    clock = Clock()
    pacer = Pacer(max_in_flight=64, start_in_flight=64, clock=clock)
    pacer.in_flight = 1
    limits = RateLimits(limit_requests=600, remaining_requests=0, reset_requests=0.25)
    pacer.release("ok", limits=limits)
    assert pacer._interval(0) == pytest.approx(1 / (0.97 * 10))
    assert pacer.pause_until == pytest.approx(clock.now + 0.25)


def test_acquire_never_exceeds_the_window():
    async def main() -> int:
        pacer = Pacer(max_in_flight=3, start_in_flight=3)
        peak = 0

        async def call() -> None:
            nonlocal peak
            ticket = await pacer.acquire()
            peak = max(peak, pacer.in_flight)
            await asyncio.sleep(0.01)
            pacer.release("ok", ticket)

        await asyncio.gather(*(call() for _ in range(20)))
        return peak

    assert asyncio.run(main()) == 3


def test_rate_limit_headers_are_parsed():
    limits = rate_limits({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-reset-tokens": "20ms",
    })  # fmt: skip
    assert limits == RateLimits(500.0, 0.0, 360.0, 30000.0, None, 0.02)
    assert rate_limits({"x-ratelimit-reset-requests": "soon"}).reset_requests is None


def test_retry_after_ms_wins_over_retry_after():
    class Response:
        headers = {"retry-after-ms": "250", "retry-after": "1"}

    class Limited(Exception):
        response = Response()

    assert retry_after_seconds(Limited()) == pytest.approx(0.25)
    Response.headers = {"retry-after": "2"}
    assert retry_after_seconds(Limited()) == 2.0
    Response.headers = {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    assert retry_after_seconds(Limited()) == 0.0


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_rpm must be a positive number"):
        generate_qa_embedding_pairs(make_nodes(2), None, max_rpm=0)


# -- the bill first: estimates and budgets -------------------------------------------------------


def test_a_call_budget_stops_cleanly_and_a_rerun_asks_only_for_the_rest(tmp_path):
    nodes, cache = make_nodes(30), tmp_path / "q.jsonl"
    with FakeOpenAIServer() as srv:
        first = generate_qa_embedding_pairs(
            nodes, srv.llm(), cache_path=cache, max_calls=8, num_workers=4, show_progress=False
        )
        stats = first.generation_stats
        assert stats["calls"] <= 8 and not first.failed_chunks
        assert stats["chunks_left"] == 30 - len(first.relevant_docs) // 2 > 0
        done = sum(1 for _ in cache.open()) - 1  # every answered chunk is in the cache
        assert done == 30 - stats["chunks_left"]
        # a new client, as a rerun has (one whose connections belong to a closed event loop
        # errs on its first calls: a retry, and a request the server answered twice)
        second = generate_qa_embedding_pairs(
            nodes, srv.llm(), cache_path=cache, show_progress=False
        )
        assert len(second.queries) == 60 and second.generation_stats["chunks_left"] == 0
        assert second.generation_stats["cached_chunks"] == done
        assert set(srv.snapshot()["successes"].values()) == {1}  # no chunk asked twice


def test_a_token_budget_stops_too(tmp_path):
    with FakeOpenAIServer() as srv:
        ds = generate_qa_embedding_pairs(
            make_nodes(30), srv.llm(), budget_tokens=400, num_workers=2, show_progress=False
        )
    stats = ds.generation_stats
    assert stats["chunks_left"] > 0 and not ds.failed_chunks
    assert 400 <= stats["prompt_tokens"] + stats["completion_tokens"] < 400 + 2 * 200


def test_the_estimate_counts_tokens_leaves_cached_chunks_out_and_sends_nothing(tmp_path):
    from llama_index_finetune_embed import estimate_qa_generation

    nodes, cache = make_nodes(20), tmp_path / "q.jsonl"
    with FakeOpenAIServer() as srv:
        generate_qa_embedding_pairs(nodes[:5], srv.llm(), cache_path=tmp_path / "other.jsonl",
                                    show_progress=False)  # fmt: skip
        generate_qa_embedding_pairs(
            nodes, srv.llm(), cache_path=cache, max_calls=6, num_workers=1, show_progress=False
        )
        sent = sum(srv.snapshot()["requests"].values())
        est = estimate_qa_generation(nodes, "gpt-4o-mini", cache_path=cache, max_rpm=60)
        assert sum(srv.snapshot()["requests"].values()) == sent  # nothing sent
    assert (est.chunks, est.cached_chunks, est.calls) == (20, 6, 14)
    assert est.tokenizer == "o200k_base" and 14 * 60 < est.prompt_tokens < 14 * 200
    assert est.completion_tokens == 14 * 2 * 25 and est.seconds == pytest.approx(14.0)
    price_in, price_out = 0.15, 0.60
    assert est.cost_usd == pytest.approx(
        (est.prompt_tokens * price_in + est.completion_tokens * price_out) / 1e6
    )
    other = estimate_qa_generation(nodes, "my-model", prices={"my-model": (1.0, 2.0)})
    assert other.tokenizer.startswith("estimated") and other.cost_usd > 0
    assert estimate_qa_generation(nodes, "unknown-model").cost_usd is None


def test_run_dry_run_prints_the_bill_and_writes_nothing(corpus, server, tmp_path, capsys):
    from llama_index_finetune_embed.cli import main

    out = tmp_path / "run"
    args = ["run", str(corpus), "--out", str(out), "--llm", "openai:gpt-4o-mini", "--dry-run",
            "--base-model", "local:all-MiniLM-L6-v2", "--max-rpm", "120"]  # fmt: skip
    code = main(args)
    text = capsys.readouterr().out
    assert code in (0, None), text
    assert "train questions:" in text and "val questions:" in text and "total cost: $" in text
    assert "calls: " in text and "prompt tokens: " in text and "(o200k_base)" in text
    assert not out.exists() and sum(server.snapshot()["requests"].values()) == 0


def test_a_local_llm_gets_full_batches():
    """No rate limit to find on this machine: every slot starts at once, so LocalLLM's collector
    batches the calls in flight (a pacer spreading starts would hand it batches of one)."""
    from llama_index_finetune_embed import LocalLLM
    from llama_index_finetune_embed.generate.llms import Generated

    class BatchRecordingLLM(LocalLLM):
        def _template(self, messages):
            return messages[-1].content

        def _generate(self, texts):
            self.__dict__.setdefault("batches", []).append(len(texts))
            return [Generated("1. What does the section cover?\n2. Which market is it?", 1, 1)
                    for _ in texts]  # fmt: skip

    llm = BatchRecordingLLM(batch_size=8)
    generate_qa_embedding_pairs(make_nodes(32), llm, num_workers=8, show_progress=False)
    assert llm.__dict__["batches"] == [8, 8, 8, 8]
