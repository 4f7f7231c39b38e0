"""Tests for generate/: parsing, settings, retries, concurrency, resume cache, faults, kill -9."""

from __future__ import annotations

import pytest

from llama_index_finetune_embed import generate_qa_embedding_pairs, parse_questions

CTX = (
    "Lyft was founded in 2012 by Logan Green and John Zimmer. What is our mission? "
    "To improve people's lives with the world's best transportation."
)
TWO = ["Who founded Lyft?", "When was Lyft founded?"]


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1. Who founded Lyft?\n2. When was Lyft founded?",
        "1) Who founded Lyft?\n2) When was Lyft founded?",
        "(1) Who founded Lyft?\n\n(2) When was Lyft founded?\n",
        "- Who founded Lyft?\n- When was Lyft founded?",
        "* Who founded Lyft?\n\u2022 When was Lyft founded?",
        "Question 1: Who founded Lyft?\nQuestion 2: When was Lyft founded?",
        "Question 1:\nWho founded Lyft?\n\nQuestion 2:\nWhen was Lyft founded?",
        "**Question 1:** Who founded Lyft?\n**Question 2:** When was Lyft founded?",
        "Q1: Who founded Lyft?\nQ2. When was Lyft founded?",
        "Who founded Lyft?\n\n\nWhen was Lyft founded?",
        '["Who founded Lyft?", "When was Lyft founded?"]',
        '```json\n["Who founded Lyft?", "When was Lyft founded?"]\n```',
        '{"questions": [{"question": "Who founded Lyft?"},'
        ' {"question": "When was Lyft founded?"}]}',
        'Here are two questions:\n["Who founded Lyft?", "When was Lyft founded?"]',
        "Sure! Here you go:\n\n1. Who founded Lyft?\n2. When was Lyft founded?\n\nHope this helps!",
        "1. Who founded Lyft? 2. When was Lyft founded?",
        "1. Who founded Lyft?\nAnswer: Logan Green and John Zimmer.\n"
        "2. When was Lyft founded?\nA: 2012",
        "1. Who founded Lyft? Answer: Logan Green.\n2. When was Lyft founded? (Answer: 2012)",
        '1. "Who founded Lyft?"\n2. "When was Lyft founded?",',
        "### Questions\n1. **Who founded Lyft?**\n2. **When was Lyft founded?**",
    ],
)
def test_parse_accepts_common_formats(text):
    assert parse_questions(text, CTX, 2) == TWO


def test_parse_keeps_multi_sentence_and_imperative_items():
    text = (
        "1. How does Lyft make money? Explain the role of its drivers.\n"
        "2. Describe the mission of Lyft in your own words."
    )
    assert parse_questions(text, CTX * 3, 5) == [
        "How does Lyft make money? Explain the role of its drivers.",
        "Describe the mission of Lyft in your own words.",
    ]


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   \n\n  ",
        "Sure! Here you go:",
        "Certainly! Here are 2 questions based on the context:",
        "Here are the questions?",
        "I'm sorry, but I can't help with that.",
        "Answer: Logan Green and John Zimmer founded Lyft in 2012.",
        "Lyft was founded in 2012 by Logan Green and John Zimmer.",
        "Lyft was founded in 2012 by Logan Green and John Zimmer?",  # copied from the chunk
        "What is our mission?",  # copied verbatim from the chunk
        "Why?",  # too short to be a query
        '{"questions": [',
        "Questions:\n\n",
        "1.\n2.\n3.",
    ],
)
def test_parse_rejects_non_questions(garbage):
    assert parse_questions(garbage, CTX, 2) == []


def test_parse_drops_duplicates_and_caps():
    text = "1. Who founded Lyft?\n2. who  founded LYFT?\n3. When was Lyft founded?\n4. Why Lyft?"
    assert parse_questions(text, CTX, 2) == TWO
    assert parse_questions(text, CTX, 1) == TWO[:1]
    assert parse_questions(text, CTX) == TWO


def test_parse_rejects_questions_longer_than_chunk():
    long_q = "What does the company say about " + "its many markets and " * 20 + "risks?"
    assert parse_questions(f"1. {long_q}\n2. Who founded Lyft?", CTX, 2) == ["Who founded Lyft?"]
    assert parse_questions(long_q, "", 2) == [long_q]  # no context: no length check


def test_parse_bad_arguments():
    with pytest.raises(TypeError, match="text must be a str"):
        parse_questions(None, CTX, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_questions"):
        parse_questions("Who founded Lyft?", CTX, -1)


# -- generation against the local OpenAI-compatible server -----------------------------------

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "seed": 0, "show_progress": False}


@pytest.fixture
def server():
    from _fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(delay=0.01) as srv:
        yield srv


def _nodes(n: int):
    from _gen_worker import make_nodes

    return make_nodes(n)


def _key(node) -> str:
    from _fake_openai import chunk_key

    return chunk_key(node.get_content(metadata_mode="embed"))


def _same_data(a, b) -> bool:
    fields = ("queries", "corpus", "relevant_docs", "query_sources", "failed_chunks")
    fields += ("metadata_mode",)
    return all(getattr(a, f) == getattr(b, f) for f in fields)


@pytest.mark.slow
def test_all_chunks_complete_under_30_percent_faults():
    from _fake_openai import FakeOpenAIServer

    nodes = _nodes(30)
    # timeout >> delay, so a slow CI machine cannot turn a good answer into a client timeout
    with FakeOpenAIServer(delay=0.02, fault_rate=0.3, hang=1.2, seed=1) as srv:
        ds = generate_qa_embedding_pairs(
            nodes, srv.llm(timeout=1.0), num_workers=6, max_attempts=12, **FAST
        )
        snap = srv.snapshot()
    assert ds.failed_chunks == {}
    assert len(ds.corpus) == 30 and len(ds.queries) == 60
    for node in nodes:  # exactly one good answer reached us per chunk: no wasted paid calls
        assert snap["successes"][_key(node)] == 1
    assert set(ds.queries.values()) <= srv.valid_questions  # garbage never became a query
    assert sum(snap["faults"].values()) >= 10 and len(snap["faults"]) >= 4
    stats = ds.generation_stats
    assert stats["calls"] == sum(snap["requests"].values())
    assert stats["retries"] == stats["calls"] - 30
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (
        snap["prompt_tokens"], snap["completion_tokens"],
    )  # fmt: skip
    assert stats["prompt_tokens"] > 0 and stats["questions"] == 60
    assert snap["max_in_flight"] > 1  # (abandoned hung requests keep counting at the server)


def test_garbage_is_retried_and_never_becomes_a_query():
    from _fake_openai import FakeOpenAIServer

    nodes = _nodes(12)
    with FakeOpenAIServer(fault_rate=0.5, faults=("garbage",), seed=3) as srv:
        ds = generate_qa_embedding_pairs(nodes, srv.llm(), num_workers=4, max_attempts=20, **FAST)
        snap = srv.snapshot()
    assert snap["faults"]["garbage"] >= 3
    assert ds.generation_stats["unusable_outputs"] == snap["faults"]["garbage"]
    assert set(ds.queries.values()) <= srv.valid_questions
    assert all(snap["successes"][_key(n)] == 1 for n in nodes)


def test_num_workers_bounds_calls_in_flight():
    from _fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(delay=0.2) as srv:
        generate_qa_embedding_pairs(_nodes(8), srv.llm(), num_workers=4, **FAST)
        assert srv.snapshot()["max_in_flight"] == 4


def test_failed_chunks_are_reported_not_dropped():
    from _fake_openai import FakeOpenAIServer

    nodes = _nodes(3)
    with FakeOpenAIServer(force_status=500) as srv:
        ds = generate_qa_embedding_pairs(nodes, srv.llm(), max_attempts=3, **FAST)
        assert sum(srv.snapshot()["requests"].values()) == 9  # 3 chunks x 3 attempts, no more
    assert list(ds.failed_chunks) == [n.node_id for n in nodes]
    assert all("HTTP 500" in why and "3 attempts" in why for why in ds.failed_chunks.values())
    assert len(ds.corpus) == 3 and len(ds) == 0
    assert ds.generation_stats["failed_chunks"] == 3


def test_on_failure_raise():
    from _fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(force_status=503) as srv:
        with pytest.raises(RuntimeError, match="failed for chunk 'chunk-000'.*HTTP 503"):
            generate_qa_embedding_pairs(
                _nodes(1), srv.llm(), max_attempts=2, on_failure="raise", **FAST
            )


def test_reference_arguments_positional_and_aliases(tmp_path):
    """llama-index-finetuning's call, positionally: retry_limit=2 is 2 calls, "fail" raises."""
    from _fake_openai import FakeOpenAIServer

    from llama_index_finetune_embed import DEFAULT_QA_GENERATE_PROMPT_TMPL
    from llama_index_finetune_embed._compat import ReferenceArgumentWarning

    with FakeOpenAIServer(force_status=503) as srv:
        with pytest.raises(RuntimeError, match="HTTP 503"):
            generate_qa_embedding_pairs(
                _nodes(1), srv.llm(), DEFAULT_QA_GENERATE_PROMPT_TMPL, 2, 2, "fail", **FAST
            )
        assert sum(srv.snapshot()["requests"].values()) == 2
    with FakeOpenAIServer() as srv:
        with pytest.warns(ReferenceArgumentWarning, match="save_every .*cache_path="):
            ds = generate_qa_embedding_pairs(
                _nodes(2), srv.llm(), DEFAULT_QA_GENERATE_PROMPT_TMPL, 2, 3, "continue", 1,
                tmp_path / "out.json", False, backoff_base=0.01, seed=0,
            )  # fmt: skip
        with pytest.raises(TypeError, match=r"got an LLM .*\(nodes, llm, \.\.\.\)"):
            generate_qa_embedding_pairs(srv.llm(), _nodes(1))
    assert (tmp_path / "out.json").is_file() and len(ds) == 4


def test_auth_error_stops_the_run_at_once():
    from _fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(force_status=401) as srv:
        with pytest.raises(RuntimeError, match="API key"):
            generate_qa_embedding_pairs(_nodes(20), srv.llm(), num_workers=2, **FAST)
        assert sum(srv.snapshot()["requests"].values()) <= 2  # only the calls already in flight


def test_sync_call_works_inside_a_running_loop_and_leaves_it_usable(server):
    import asyncio

    from llama_index_finetune_embed import agenerate_qa_embedding_pairs

    nodes, llm = _nodes(4), server.llm()

    async def notebook_cell():
        inside = generate_qa_embedding_pairs(nodes, llm, **FAST)  # sync call, loop running
        await asyncio.sleep(0)  # the caller's loop still works
        awaited = await agenerate_qa_embedding_pairs(nodes, llm, **FAST)
        return inside, awaited

    inside, awaited = asyncio.run(notebook_cell())
    plain = generate_qa_embedding_pairs(nodes, llm, **FAST)  # and again from plain code
    assert _same_data(inside, awaited) and _same_data(inside, plain)
    assert len(plain) == 8


def test_metadata_mode_is_explicit_and_recorded(server, toy_nodes):
    embed = generate_qa_embedding_pairs(toy_nodes[:2], server.llm(), **FAST)
    none = generate_qa_embedding_pairs(toy_nodes[:2], server.llm(), metadata_mode="none", **FAST)
    assert embed.metadata_mode == "embed" and none.metadata_mode == "none"
    assert embed.corpus["node-0"].startswith("file_name: doc0.txt")  # what the index embeds
    assert none.corpus["node-0"] == toy_nodes[0].text
    keys = server.snapshot()["requests"]
    assert keys[_key(toy_nodes[0])] == 1  # the LLM was shown the embedded text
    with pytest.raises(ValueError, match="metadata_mode must be one of"):
        generate_qa_embedding_pairs(toy_nodes, server.llm(), metadata_mode="text")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"qa_generate_prompt_tmpl": "no placeholder"}, "context_str"),
        ({"qa_generate_prompt_tmpl": 'JSON like {"q": 1}: {context_str}'}, "literal braces"),
        ({"num_workers": 0}, "num_workers must be a positive int"),
        ({"num_questions_per_chunk": 0}, "num_questions_per_chunk"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"on_failure": "stop"}, "on_failure must be"),
        ({"retry_limit": 0}, "retry_limit must be a positive int"),
        ({"retry_limit": 2, "max_attempts": 3}, "same setting"),
    ],
)
def test_bad_arguments_fail_before_any_call(server, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_qa_embedding_pairs(_nodes(2), server.llm(), **kwargs)
    assert not server.snapshot()["requests"]


def test_bad_nodes(server):
    nodes = _nodes(2)
    with pytest.raises(ValueError, match="unique.*'chunk-000' repeats"):
        generate_qa_embedding_pairs([nodes[0], nodes[0]], server.llm())
    with pytest.raises(TypeError, match="BaseNode"):
        generate_qa_embedding_pairs(["text"], server.llm())
    with pytest.raises(ValueError, match="^nodes is empty"):  # issue #14: not "corpus is empty"
        generate_qa_embedding_pairs([], server.llm())
    assert not server.snapshot()["requests"]


def test_sync_and_async_forms_have_one_signature_from_the_settings():
    import dataclasses
    import inspect

    from llama_index_finetune_embed import agenerate_qa_embedding_pairs
    from llama_index_finetune_embed.generate import GenerationSettings

    sync = inspect.signature(generate_qa_embedding_pairs)
    assert sync == inspect.signature(agenerate_qa_embedding_pairs)
    assert generate_qa_embedding_pairs.__doc__ == agenerate_qa_embedding_pairs.__doc__
    assert not inspect.iscoroutinefunction(generate_qa_embedding_pairs)
    params = sync.parameters
    # llama-index-finetuning 0.4.2's positional order, then our options, keyword-only
    positional = ["nodes", "llm", "qa_generate_prompt_tmpl", "num_questions_per_chunk"]
    positional += ["retry_limit", "on_failure", "save_every", "output_path", "verbose"]
    assert [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    keywords = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    fields = {f.name: f.default for f in dataclasses.fields(GenerationSettings)}
    assert {**keywords, **{n: params[n].default for n in positional[4:]}} == fields
    assert keywords["num_workers"] == 128 and params["on_failure"].default == "continue"
    assert len(keywords) == 16 and not any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_workers": 0}, "num_workers must be a positive int"),
        ({"max_attempts": 0}, "max_attempts must be a positive int"),
        ({"on_failure": "stop"}, "on_failure must be 'continue' or 'raise'"),
        ({"save_every": 0}, "save_every must be a positive int"),
        ({"backoff_base": -1}, "backoff_base/backoff_max must be >= 0"),
        ({"timeout": 0}, "timeout > 0"),
        ({"metadata_mode": "text"}, "metadata_mode must be one of"),
    ],
)
def test_settings_are_checked_at_construction(kwargs, match):
    from llama_index_finetune_embed.generate import GenerationSettings

    with pytest.raises(ValueError, match=match):
        GenerationSettings(**kwargs)
    assert GenerationSettings(metadata_mode="none").mode == "none"


def test_unknown_keyword_is_a_type_error(server):
    with pytest.raises(TypeError, match="num_worker"):
        generate_qa_embedding_pairs(_nodes(1), server.llm(), num_worker=2)
    assert not server.snapshot()["requests"]


def test_unusable_outputs_come_back_by_value_and_can_go_unlogged(caplog):
    """The offline generator asks a weak LLM: it reads those failures from the result."""
    from llama_index.core.llms import MockLLM

    from llama_index_finetune_embed.generate import GenerationSettings
    from llama_index_finetune_embed.generate.run import GenerationRun, run_sync

    settings = GenerationSettings(max_attempts=1, **FAST)
    ds = run_sync(GenerationRun(_nodes(2), MockLLM(), "{context_str}", 2, settings,
                                warn_unusable=False).execute())  # fmt: skip
    assert ds.generation_stats["unusable_chunks"] == 2 and len(ds.failed_chunks) == 2
    assert "chunk 'chunk-000' failed" not in caplog.text
    generate_qa_embedding_pairs(_nodes(1), MockLLM(), max_attempts=1, **FAST)
    assert "chunk 'chunk-000' failed: no usable question" in caplog.text  # the public default


def test_cache_key_of_an_llm_that_has_one_is_used():
    from llama_index.core.llms import MockLLM

    from llama_index_finetune_embed import LocalLLM
    from llama_index_finetune_embed.generate.run import cache_model_id

    assert cache_model_id(MockLLM()) == "MockLLM/unknown"
    llm = LocalLLM()
    assert cache_model_id(llm) == llm.cache_key


def test_generate_imports_no_torch_and_no_later_stage():
    from _imports import modules_loaded_by

    loaded = modules_loaded_by("llama_index_finetune_embed.generate")
    ours = {name.split(".")[1] for name in loaded if name.startswith("llama_index_finetune_embed.")}
    assert "torch" not in loaded and "sentence_transformers" not in loaded
    assert ours <= {"generate", "dataset", "_io", "_compat"}, sorted(ours)


def test_refusals_reach_the_pacer_with_the_llm_built_as_the_readme_does(server, caplog):
    """``OpenAI(model=...)`` keeps max_retries=3: the run calls a copy without (#28)."""
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model="gpt-4o-mini", api_key="test", api_base=server.url, timeout=10)
    server.refuse_next = 2
    ds = generate_qa_embedding_pairs(_nodes(1), llm, **FAST)
    stats, snap = ds.generation_stats, server.snapshot()
    assert snap["rate_limited"] == stats["rate_limited"] == stats["retries"] == 2
    assert stats["calls"] == sum(snap["requests"].values()) == 3 and len(ds) == 2
    assert "max_retries" not in caplog.text  # handled, nothing to warn about
    # the caller's object is untouched: it still retries 429s itself
    server.refuse_next = 2
    assert llm.max_retries == 3 and llm.complete("Hello").text
    assert server.snapshot()["rate_limited"] == 4


def test_the_copy_without_retries_has_the_callers_cache_id():
    from llama_index.llms.openai import OpenAI

    from llama_index_finetune_embed.generate.calls import without_retries
    from llama_index_finetune_embed.generate.run import cache_model_id

    llm = OpenAI(model="gpt-4o-mini", api_key="test")
    copy = without_retries(llm)
    assert copy.max_retries == 0 and llm.max_retries == 3
    assert cache_model_id(copy) == cache_model_id(llm)  # resume caches still match


def test_a_client_the_user_passed_is_kept_without_its_retries(server):
    import openai
    from llama_index.llms.openai import OpenAI

    client = openai.AsyncOpenAI(api_key="test", base_url=server.url, max_retries=5)
    # api_base leads nowhere: dropping the user's client would fail every call
    llm = OpenAI(model="gpt-4o-mini", api_key="test", api_base="http://127.0.0.1:9/v1",
                 async_openai_client=client)  # fmt: skip
    server.refuse_next = 1
    ds = generate_qa_embedding_pairs(_nodes(1), llm, **FAST)
    assert ds.generation_stats["rate_limited"] == 1 and len(ds) == 2
    assert client.max_retries == 5


def test_an_llm_that_must_retry_is_called_as_it_is_with_a_warning(caplog):
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.llms import MockLLM

    class Retrying(MockLLM):
        max_retries: int = Field(default=2, gt=0)

    generate_qa_embedding_pairs(_nodes(1), Retrying(), max_attempts=1, **FAST)
    assert "max_retries=2 and cannot be copied" in caplog.text


def test_llm_without_usage_echoing_the_prompt_gets_nothing_accepted():
    """MockLLM echoes the prompt: instructions and chunk text must never become queries."""
    from llama_index.core.llms import MockLLM

    ds = generate_qa_embedding_pairs(_nodes(3), MockLLM(), max_attempts=2, **FAST)
    assert len(ds) == 0 and len(ds.failed_chunks) == 3
    assert all("no usable question" in why for why in ds.failed_chunks.values())
    assert ds.generation_stats["calls_without_usage"] == ds.generation_stats["calls"] == 6


def test_backoff_is_exponential_jittered_capped_and_seeded():
    from llama_index.core.llms import MockLLM

    from llama_index_finetune_embed.generate import GenerationSettings
    from llama_index_finetune_embed.generate.run import GenerationRun

    def delays(seed):
        settings = GenerationSettings(backoff_base=1.0, backoff_max=5.0, seed=seed)
        run = GenerationRun(_nodes(1), MockLLM(), "{context_str}", 2, settings)
        return [run._delay(attempt, 0.0) for attempt in range(1, 6)]

    first = delays(7)
    assert first == delays(7) and first != delays(8)
    for attempt, delay in enumerate(first, start=1):
        full = min(5.0, 2 ** (attempt - 1))
        assert full / 2 <= delay <= full
    settings = GenerationSettings(backoff_base=0.1, seed=0)
    run = GenerationRun(_nodes(1), MockLLM(), "{context_str}", 2, settings)
    assert run._delay(1, 3.0) == 3.0  # the server's Retry-After wins over a shorter backoff


def test_a_cache_in_use_by_another_run_is_refused(tmp_path):
    from llama_index_finetune_embed.generate.cache import ResumeCache, cache_fingerprint

    fingerprint = cache_fingerprint("{context_str}", "m", 2, "embed")
    first = ResumeCache.open(tmp_path / "c.jsonl", fingerprint, {"a": "text"})
    try:
        with pytest.raises(ValueError, match="in use by another running generation"):
            ResumeCache.open(tmp_path / "c.jsonl", fingerprint, {"a": "text"})
    finally:
        first.close()
    ResumeCache.open(tmp_path / "c.jsonl", fingerprint, {"a": "text"}).close()


def test_output_path_and_empty_chunks(server, tmp_path):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    nodes = [*_nodes(2), TextNode(id_="blank", text="   ")]
    ds = generate_qa_embedding_pairs(nodes, server.llm(), output_path=tmp_path / "ds.json", **FAST)
    assert ds.failed_chunks == {"blank": "empty text: nothing to ask about"}
    assert _same_data(EmbeddingQAFinetuneDataset.from_json(tmp_path / "ds.json"), ds)


# -- resume cache ----------------------------------------------------------------------------


def _cache_lines(path) -> list[dict]:
    from llama_index_finetune_embed._io import read_jsonl

    return list(read_jsonl(path))


def test_cache_rerun_makes_no_calls_and_gives_same_dataset(server, tmp_path):
    cache = tmp_path / "pairs.jsonl"
    first = generate_qa_embedding_pairs(_nodes(6), server.llm(), cache_path=cache, **FAST)
    calls = sum(server.snapshot()["requests"].values())
    again = generate_qa_embedding_pairs(_nodes(6), server.llm(), cache_path=cache, **FAST)
    assert sum(server.snapshot()["requests"].values()) == calls == 6
    assert _same_data(first, again) and list(first.queries) == list(again.queries)
    assert again.generation_stats["calls"] == 0 and again.generation_stats["cached_chunks"] == 6
    lines = _cache_lines(cache)
    assert lines[0]["type"] == "header" and len(lines) == 7


def test_cache_torn_last_line_is_ignored_and_redone(server, tmp_path):
    cache = tmp_path / "pairs.jsonl"
    full = generate_qa_embedding_pairs(_nodes(5), server.llm(), cache_path=cache, **FAST)
    raw = cache.read_bytes().splitlines(keepends=True)
    torn_id = _cache_lines(cache)[-1]["node_id"]
    cache.write_bytes(b"".join(raw[:-1]) + raw[-1][: len(raw[-1]) // 2])  # crash mid-write
    before = server.snapshot()["requests"]
    resumed = generate_qa_embedding_pairs(_nodes(5), server.llm(), cache_path=cache, **FAST)
    after = server.snapshot()["requests"]
    assert sum(after.values()) - sum(before.values()) == 1  # only the torn chunk is asked again
    torn_key = _key(next(n for n in _nodes(5) if n.node_id == torn_id))
    assert after[torn_key] == before[torn_key] + 1
    assert _same_data(full, resumed)
    assert [r.get("node_id") for r in _cache_lines(cache)].count(torn_id) == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"num_questions_per_chunk": 3}, "num_questions_per_chunk 2 -> 3"),
        ({"qa_generate_prompt_tmpl": "Ask about: {context_str}"}, "prompt_sha256"),
        ({"llm_id": "OpenAI/gpt-4o"}, "model 'OpenAI/gpt-4o-mini' -> 'OpenAI/gpt-4o'"),
        ({"metadata_mode": "all"}, "metadata_mode 'embed' -> 'all'"),
    ],
)
def test_cache_from_other_settings_is_refused(server, tmp_path, change, match):
    cache = tmp_path / "pairs.jsonl"
    generate_qa_embedding_pairs(_nodes(2), server.llm(), cache_path=cache, **FAST)
    calls = sum(server.snapshot()["requests"].values())
    with pytest.raises(ValueError, match=match):
        generate_qa_embedding_pairs(_nodes(2), server.llm(), cache_path=cache, **change, **FAST)
    assert sum(server.snapshot()["requests"].values()) == calls


def test_cache_of_other_nodes_is_an_error_not_a_reuse(server, tmp_path):
    """llama_index #16479: the validation call silently returned the training pairs."""
    from llama_index.core.schema import TextNode

    cache = tmp_path / "pairs.jsonl"
    nodes = _nodes(6)
    train, val = nodes[:4], nodes[4:]
    generate_qa_embedding_pairs(train, server.llm(), cache_path=cache, **FAST)
    with pytest.raises(ValueError, match="another set of nodes"):
        generate_qa_embedding_pairs(val, server.llm(), cache_path=cache, **FAST)
    edited = [TextNode(id_=n.node_id, text=n.text + " Edited.") for n in train]
    with pytest.raises(ValueError, match="differs from when it was cached"):
        generate_qa_embedding_pairs(edited, server.llm(), cache_path=cache, **FAST)
    assert sum(server.snapshot()["requests"].values()) == 4


def test_cache_that_is_not_ours_is_refused(server, tmp_path):
    cache = tmp_path / "pairs.jsonl"
    cache.write_text('{"query": "x"}\n')
    with pytest.raises(ValueError, match="not a question-generation cache"):
        generate_qa_embedding_pairs(_nodes(1), server.llm(), cache_path=cache, **FAST)


def test_query_ids_are_stable_across_runs(server, tmp_path):
    a = generate_qa_embedding_pairs(_nodes(3), server.llm(), **FAST)
    b = generate_qa_embedding_pairs(_nodes(3), server.llm(), num_workers=1, **FAST)
    assert list(a.queries) == list(b.queries) and a.relevant_docs == b.relevant_docs


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_uninterrupted_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from _fake_openai import FakeOpenAIServer
    from _gen_worker import GEN_OPTIONS, make_llm

    n = 16
    cache = tmp_path / "pairs.jsonl"
    worker = Path(__file__).with_name("_gen_worker.py")
    config = {"delay": 0.15, "fault_rate": 0.2, "hang": 1.2, "seed": 5}
    with FakeOpenAIServer(**config) as srv:
        child = subprocess.Popen(
            [sys.executable, str(worker), srv.url, str(cache), str(tmp_path / "x.json"), str(n)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 1 + 5:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()
        finished = {r["node_id"] for r in _cache_lines(cache)[1:]}
        at_kill = srv.snapshot()["requests"]
        assert 5 <= len(finished) < n
        resumed = generate_qa_embedding_pairs(
            _nodes(n), make_llm(srv.url), cache_path=cache, **GEN_OPTIONS
        )
        after = srv.snapshot()["requests"]
    for node in _nodes(n):  # no finished chunk was asked again
        if node.node_id in finished:
            assert after[_key(node)] == at_kill[_key(node)]
    ids = [r["node_id"] for r in _cache_lines(cache)[1:]]
    assert sorted(ids) == sorted({n.node_id for n in _nodes(n)})  # nothing duplicated or missing
    assert resumed.generation_stats["cached_chunks"] == len(finished)
    with FakeOpenAIServer(**config) as fresh:
        full = generate_qa_embedding_pairs(
            _nodes(n), make_llm(fresh.url), cache_path=tmp_path / "full.jsonl", **GEN_OPTIONS
        )
    assert _same_data(resumed, full) and list(resumed.queries) == list(full.queries)
    assert resumed.failed_chunks == {} and len(resumed) == 2 * n


# -- dataset fields --------------------------------------------------------------------------


def test_failed_chunks_and_stats_survive_json_subset_and_merge(server, tmp_path):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    nodes = [*_nodes(4), TextNode(id_="blank", text="")]
    ds = generate_qa_embedding_pairs(nodes, server.llm(), **FAST)
    ds.save_json(tmp_path / "ds.json")
    loaded = EmbeddingQAFinetuneDataset.from_json(tmp_path / "ds.json")
    assert loaded.failed_chunks == {"blank": "empty text: nothing to ask about"}
    assert loaded.generation_stats == ds.generation_stats
    part = ds.subset(["chunk-000", "chunk-001"])
    assert part.failed_chunks == {} and part.generation_stats == ds.generation_stats
    assert ds.subset(["blank"]).failed_chunks == ds.failed_chunks
    train, val = ds.split(0.4, seed=0)
    assert train.merge(val).generation_stats == ds.generation_stats  # one run counted once
    other = generate_qa_embedding_pairs(_nodes(2), server.llm(), **FAST)
    merged = ds.merge(other)
    assert merged.generation_stats["calls"] == ds.generation_stats["calls"] + 2
    assert merged.failed_chunks == ds.failed_chunks
    with pytest.raises(ValueError, match="failed_chunks names chunk 'nope'"):
        EmbeddingQAFinetuneDataset(**{**ds.model_dump(), "failed_chunks": {"nope": "x"}})
