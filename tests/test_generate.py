"""Tests for generate.py: parsing, retries, concurrency, resume cache, fault injection, kill -9."""

from __future__ import annotations

import pytest

from llama_index_finetune_embed import parse_questions

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
