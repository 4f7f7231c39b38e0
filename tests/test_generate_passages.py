"""Questions from anywhere in the chunk (#27): passages, their spread, positions in the dataset."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.schema import TextNode

from llama_index_finetune_embed import (
    EmbeddingQAFinetuneDataset,
    estimate_qa_generation,
    generate_qa_embedding_pairs,
)
from llama_index_finetune_embed.generate._passages import (
    asked_passages,
    passage_spans,
    spread_questions,
)

#: A chunk of 800 words: 80 numbered sentences of ten words ("Topic 17 ...").
LONG = " ".join(f"Topic {i} is described here in plain words for readers." for i in range(80))
SHORT = "Topic 99 is short but says a good deal about a number of things."


class TopicLLM(CustomLLM):
    """Writes one question per topic number it reads, up to the number asked for."""

    prompts: list = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="topics")

    def complete(self, prompt, formatted=False, **kwargs):
        self.prompts.append(prompt)
        asked = int(re.search(r"set up (\d+) questions", prompt).group(1))
        topics = re.findall(r"Topic (\d+) is", prompt)[:asked]
        return CompletionResponse(text="\n".join(f"{i + 1}. What is topic {t} about?"
                                                 for i, t in enumerate(topics)))

    def stream_complete(self, prompt, formatted=False, **kwargs):
        yield self.complete(prompt)


def test_passages_cover_the_text_in_order_at_sentence_ends():
    spans = passage_spans(LONG, 200)
    assert len(spans) == 4 and spans[0][0] == 0 and spans[-1][1] == len(LONG)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))  # in order, no overlap
    assert all(LONG[s:e].endswith("readers.") for s, e in spans)  # cut at sentence ends
    assert passage_spans("Short text. Two sentences.", 200) == [(0, 26)]
    assert passage_spans(LONG, None) == [(0, len(LONG))]


def test_fewer_questions_than_passages_are_spread_evenly():
    rng = random.Random(0)
    counts = Counter()
    for _ in range(4000):
        picks = spread_questions(5, 2, rng)
        assert sum(picks) == 2 and max(picks) == 1
        counts.update(i for i, k in enumerate(picks) if k)
    assert max(counts.values()) / min(counts.values()) < 1.1  # every passage as often
    assert spread_questions(3, 7, rng) in ([3, 2, 2], [2, 3, 2], [2, 2, 3])


def test_every_passage_of_a_long_chunk_is_asked_and_positives_stay_whole():
    nodes = [TextNode(id_="long", text=LONG), TextNode(id_="short", text=SHORT)]
    llm = TopicLLM(prompts=[])
    ds = generate_qa_embedding_pairs(
        nodes, llm=llm, num_questions_per_chunk=4, show_progress=False
    )
    assert len(llm.prompts) == 5  # one call per passage of the long chunk, one for the short
    seen = [re.findall(r"Topic (\d+) is", p) for p in llm.prompts]
    long_prompts = [s for s in seen if "99" not in s]
    assert sorted(int(s[0]) for s in long_prompts) == [0, 20, 40, 60]  # each passage, once
    assert all(len(s) == 20 for s in long_prompts)  # a passage, not the chunk
    long_q = [q for q, docs in ds.relevant_docs.items() if docs == ["long"]]
    assert len(long_q) == 4
    spots = sorted(ds.query_positions[q]["passage"] for q in long_q)
    assert spots == [0, 1, 2, 3]
    for qid in long_q:  # the question is about the passage recorded for it
        where = ds.query_positions[qid]
        topic = re.search(r"topic (\d+)", ds.queries[qid]).group(1)
        assert f"Topic {topic} is" in ds.corpus["long"][where["start"] : where["end"]]
    assert ds.corpus["long"] == LONG  # the positive is the whole chunk
    short = [q for q, docs in ds.relevant_docs.items() if docs == ["short"]]
    assert [ds.query_positions[q]["passages"] for q in short] == [1]


def test_long_chunks_asked_whole_with_passage_words_none():
    llm = TopicLLM(prompts=[])
    ds = generate_qa_embedding_pairs(
        [TextNode(id_="long", text=LONG)], llm=llm, num_questions_per_chunk=2,
        passage_words=None, show_progress=False,
    )  # fmt: skip
    assert len(llm.prompts) == 1
    # the whole chunk in one prompt: the writer asks about its start, as llama-index-finetuning
    assert sorted(ds.queries.values()) == ["What is topic 0 about?", "What is topic 1 about?"]


def test_positions_spread_over_a_corpus_and_survive_json(tmp_path):
    nodes = [TextNode(id_=f"n{i}", text=LONG) for i in range(40)]
    ds = generate_qa_embedding_pairs(
        nodes, llm=TopicLLM(prompts=[]), num_questions_per_chunk=1, show_progress=False,
        cache_path=tmp_path / "cache.jsonl",
    )  # fmt: skip
    summary = ds.position_summary()
    assert summary["long_questions"] == 40 and summary["even_share"] == 0.25
    assert summary["first_share"] < 0.45  # reading chunks whole it would be 1.0
    ds.save_json(tmp_path / "ds.json")
    back = EmbeddingQAFinetuneDataset.from_json(tmp_path / "ds.json")
    assert back.query_positions == ds.query_positions
    train, val = back.split(0.25, seed=0)
    assert set(train.query_positions) | set(val.query_positions) == set(ds.query_positions)
    # a rerun reads the positions back from the resume cache, asking nothing
    llm = TopicLLM(prompts=[])
    again = generate_qa_embedding_pairs(
        nodes, llm=llm, num_questions_per_chunk=1, show_progress=False,
        cache_path=tmp_path / "cache.jsonl",
    )  # fmt: skip
    assert llm.prompts == [] and again.query_positions == ds.query_positions


def test_a_llama_index_finetuning_file_still_loads(tmp_path):
    old = {"queries": {"q": "Who?"}, "corpus": {"c": "Lyft."}, "relevant_docs": {"q": ["c"]},
           "mode": "text"}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(old))
    ds = EmbeddingQAFinetuneDataset.from_json(tmp_path / "old.json")
    assert ds.query_positions == {} and ds.position_summary() is None


def test_bad_positions_are_refused():
    import pytest

    with pytest.raises(ValueError, match="passage < passages"):
        EmbeddingQAFinetuneDataset(
            queries={"q": "Who?"}, corpus={"c": "Lyft."}, relevant_docs={"q": ["c"]},
            query_positions={"q": {"passage": 2, "passages": 2, "start": 0, "end": 5}},
        )  # fmt: skip


def test_the_bill_counts_one_call_per_asked_passage():
    nodes = [TextNode(id_="long", text=LONG), TextNode(id_="short", text=SHORT)]
    est = estimate_qa_generation(nodes, "gpt-4o-mini", num_questions_per_chunk=2)
    whole = estimate_qa_generation(
        nodes, "gpt-4o-mini", num_questions_per_chunk=2, passage_words=None
    )
    assert (est.calls, est.passage_calls, whole.calls) == (3, 2, 2)
    assert est.prompt_tokens < whole.prompt_tokens + 400  # two passages + one more template
    assert any("about one passage" in line for line in est.lines())
    asked = asked_passages(LONG, "long", 2, 200, seed=0)
    assert [k for _, k in asked] == [1, 1] and len({s["passage"] for s, _ in asked}) == 2
