"""The offline generator: filtered LLM questions (scripted LLMs) mixed with pseudo-queries."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.schema import TextNode
from test_pseudo import TENK

from llama_index_finetune_embed import LocalLLM, generate_offline_pairs
from llama_index_finetune_embed.generate.llms import Generated
from llama_index_finetune_embed.generate.offline import (
    OfflineSettings,
    clean_question,
    offline_val_questions,
    passage_index,
)


class ScriptedLLM(CustomLLM):
    """Asks about the first words of the chunk; chats for scooters; generic for revenue."""

    prompts: list = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted")

    def complete(self, prompt, formatted=False, **kwargs):
        self.prompts.append(prompt)
        text = prompt.rsplit("Text:", 1)[-1].split("\n")[0].split()
        if "scooters" in text:
            return CompletionResponse(text="What is your plan for bikes and scooters?")
        if "Revenue" in text:
            return CompletionResponse(text="What is the answer?")
        return CompletionResponse(text=f"What about {' '.join(text[:5])}? It is ...")

    def stream_complete(self, prompt, formatted=False, **kwargs):
        yield self.complete(prompt)


def test_offline_pairs_mix_filtered_llm_questions_with_ict(toy_nodes, tenk_nodes, tmp_path):
    nodes = toy_nodes + tenk_nodes
    llm = ScriptedLLM(prompts=[])
    ds = generate_offline_pairs(nodes, llm=llm, context_words=12, cache_path=tmp_path / "c.jsonl")
    by_source = {}
    for qid, src in ds.query_sources.items():
        by_source.setdefault(src, []).append((ds.queries[qid], ds.relevant_docs[qid][0]))
    # toy nodes 2 (revenue: generic) and 5 (scooters: chatty) are filtered out; "? It is" cut off
    llm_ids = {nid for _, nid in by_source["llm"]}
    assert {n for n in llm_ids if n.startswith("node")} == {
        n.node_id for n in toy_nodes if n.node_id not in {"node-2", "node-5"}
    }
    # 10-K chunks are longer than 12 words: each was read from one passage, recorded with it
    assert len(llm_ids - {n.node_id for n in toy_nodes}) >= 2
    for qid, src in ds.query_sources.items():
        if src == "llm" and ds.relevant_docs[qid][0].startswith("chunk"):
            assert ds.query_positions[qid]["passages"] > 1
    assert ("What about Lyft was founded in 2012?", "node-0") in by_source["llm"]
    assert len(by_source["ict"]) == len(tenk_nodes)  # toy chunks are one sentence: no ICT
    # the LLM saw clipped chunks after the one-shot example; the corpus keeps the full texts
    assert all("Why did Lyft's revenue grow in 2021?" in p for p in llm.prompts)
    assert all(len(p.rsplit("Text:", 1)[-1].split()) < 25 for p in llm.prompts)
    assert ds.corpus["chunk-0"] == tenk_nodes[0].get_content(metadata_mode="embed")
    assert ds.generation_stats["llm_questions_kept"] == len(by_source["llm"])
    # a rerun resumes from the cache: no LLM call at all
    again = ScriptedLLM(prompts=[])
    rerun = generate_offline_pairs(
        nodes, llm=again, context_words=12, cache_path=tmp_path / "c.jsonl"
    )
    assert rerun.queries == ds.queries and again.prompts == []


def test_offline_val_questions(toy_nodes, tenk_nodes):
    val = offline_val_questions(toy_nodes, llm=ScriptedLLM(prompts=[]))
    assert set(val.query_sources.values()) == {"llm"} and len(val) == 6
    fallback = offline_val_questions(tenk_nodes)  # no LLM: one kept sentence per chunk
    assert set(fallback.corpus) == {n.node_id for n in tenk_nodes} and len(fallback) == 4


def test_offline_pairs_bad_input(toy_nodes):
    with pytest.raises(ValueError, match="pseudo methods"):
        generate_offline_pairs(toy_nodes, pseudo=("cloze",))
    with pytest.raises(ValueError, match="nothing to generate"):
        generate_offline_pairs(toy_nodes, pseudo=())
    with pytest.raises(ValueError, match="nodes is empty"):
        generate_offline_pairs([])
    with pytest.raises(ValueError, match="llm must be"):
        generate_offline_pairs(toy_nodes, llm="gpt-4")
    with pytest.raises(ValueError, match="pass LocalLLM"):  # the marker is make_llm's job now
        generate_offline_pairs(toy_nodes, llm="local")


def test_local_llm_gets_question_settings_unless_set():
    asker = LocalLLM().question_writer()
    assert isinstance(asker, LocalLLM) and asker.assistant_prefix == "What" and asker.examples
    mine = LocalLLM(assistant_prefix="Why", batch_size=3).question_writer()
    assert mine.assistant_prefix == "Why" and mine.batch_size == 3 and mine.examples


@pytest.mark.parametrize(
    ("output", "kept"),
    [
        ("What drove Lyft revenue in 2021? Because", "What drove Lyft revenue in 2021?"),
        ("What is the answer to this?", None),  # shares no content word with the chunk
        ("What is your plan for Lyft revenue?", None),  # chat, not a search query
        ("What drove Lyft revenue", None),  # no question mark
        ("Lyft revenue?", None),  # too short
    ],
)
def test_clean_question(output, kept):
    assert clean_question(output, "Lyft revenue grew in 2021 as rides recovered.") == kept


class PrefixLocalLLM(LocalLLM):
    """A LocalLLM without a model: writes a grounded question only when the prefix is "How"."""

    def _template(self, messages):
        return messages[-1].content + "|" + self.assistant_prefix

    def _generate(self, texts):
        self.__dict__.setdefault("seen", []).extend(texts)  # each prompt read
        prefixes = self.assistant_prefixes or [None]
        out = []
        for text in texts:
            words = text.split("Text:", 1)[-1].split("\n")[0].split()
            lines = []
            for prefix in prefixes:
                prefix = prefix or text.rsplit("|", 1)[1]
                good = prefix == "How" or "Lyft" in words
                lines.append(f"{prefix} about {' '.join(words[:5])}?" if good else "?")
            out.append("\n".join(lines))
        return [Generated(text, prompt_tokens=1, completion_tokens=1) for text in out]

    def with_options(self, **updates):
        clone = super().with_options(**updates)
        clone.__dict__["seen"] = self.__dict__.setdefault("seen", [])
        return clone


def test_local_llm_retries_failed_chunks_with_the_next_prefix(toy_nodes, tmp_path):
    # short chunks: one passage, so both passes are decoded from one read of each prompt
    llm = PrefixLocalLLM(batch_size=3)
    ds = generate_offline_pairs(
        toy_nodes, llm=llm, llm_prefixes=("What", "How"), pseudo=(), cache_path=tmp_path / "q.jsonl"
    )
    questions = sorted(ds.queries.values())
    assert len(questions) == 8
    assert "What about Lyft was founded in 2012?" in questions  # first pass
    assert sum(q.startswith("How about") for q in questions) == 7  # second pass: the others
    assert len(llm.seen) == 8  # each chunk's prompt read once for both prefixes
    stats = ds.generation_stats  # each call's token usage reaches the stats (issue #14)
    assert stats["prompt_tokens"] == stats["completion_tokens"] == 8
    assert stats["calls_without_usage"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.what_how.jsonl"]
    again = generate_offline_pairs(  # resumed from its cache: nothing asked again
        toy_nodes, llm=llm, llm_prefixes=("What", "How"), pseudo=(), cache_path=tmp_path / "q.jsonl"
    )
    assert again.queries == ds.queries and len(llm.seen) == 8


def test_passes_over_other_passages_are_asked_only_while_a_chunk_needs_them(tmp_path):
    # long chunks: passes 0 and 2 read one passage (decoded together), pass 1 the other one
    words = " ".join(f"Uber{i} ride{i}." for i in range(200))  # 400 words: two passages
    nodes = [TextNode(id_=f"long-{i}", text=f"Lyft {i} {words}") for i in range(8)]
    llm = PrefixLocalLLM(batch_size=4)
    ds = generate_offline_pairs(
        nodes, llm=llm, llm_prefixes=("What", "How", "Which"), questions_per_chunk=1, pseudo=(),
        cache_path=tmp_path / "q.jsonl", context_words=200,
    )  # fmt: skip
    assert len(ds.queries) == 8
    text = {n.node_id: n.text for n in nodes}
    settings = OfflineSettings(llm_prefixes=("What", "How", "Which"))
    firsts = {nid: passage_index(n, 0, settings) for n in nodes for nid in [n.node_id]}
    for qid, question, nid in ds.pairs():
        # "What" works only where "Lyft" (a chunk's first word) is in the passage read first;
        # "How" works on any passage, and pass 1 reads the other one
        what = text[nid].startswith("Lyft") and firsts[nid] == 0
        assert question.startswith("What about" if what else "How about"), question
        assert ds.query_positions[qid]["passage"] == (firsts[nid] if what else 1 - firsts[nid])
    # passage A read once for What and Which; passage B only for the chunks still without one
    hows = sum(q.startswith("How") for q in ds.queries.values())
    assert 0 < hows < 8 and len(llm.seen) == 8 + hows
    assert {p.name for p in tmp_path.iterdir()} == {"q.what_which.jsonl", "q.how.jsonl"}


@pytest.fixture
def tenk_nodes():
    return [
        TextNode(id_=f"chunk-{i}", text=TENK.replace("2021", str(2000 + i)), metadata={"page": i})
        for i in range(4)
    ]


def test_offline_settings_are_checked_at_construction_and_shown_as_keywords():
    import inspect

    from llama_index_finetune_embed.generate.offline import OfflineSettings

    with pytest.raises(ValueError, match="context_words must be >= 1"):
        OfflineSettings(context_words=0)
    with pytest.raises(ValueError, match="llm_prefixes must name at least one prefix"):
        generate_offline_pairs([TextNode(text="x")], llm_prefixes=())  # before any work
    train = inspect.signature(generate_offline_pairs).parameters
    val = inspect.signature(offline_val_questions).parameters
    assert train["llm_prefixes"].default == ("What",) and train["context_words"].default == 200
    assert val["llm_prefixes"].default == ("What", "How", "Which")
    assert set(train) - set(val) == {"pseudo", "pseudo_per_chunk", "remove_prob"}
