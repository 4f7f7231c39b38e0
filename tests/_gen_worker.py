"""Child process for the kill -9 test: generate against a FakeOpenAIServer with a resume cache.

Usage: python tests/_gen_worker.py API_BASE CACHE_PATH OUT_JSON NUM_CHUNKS
"""

from __future__ import annotations

import sys

GEN_OPTIONS = {
    "num_workers": 2,
    "max_attempts": 12,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "seed": 0,
    "show_progress": False,
}


def make_nodes(n: int):
    """``n`` distinct TextNodes without metadata (so every metadata mode renders the same text)."""
    from llama_index.core.schema import TextNode

    topics = ["revenue", "drivers", "insurance", "regulation", "bikes", "autonomy", "pricing"]
    return [
        TextNode(
            id_=f"chunk-{i:03d}",
            text=f"Section {i} of the annual report covers {topics[i % len(topics)]} "
            f"in market {i * 7 % 13}, with figures for quarter {i % 4 + 1} and outlook {i}.",
        )
        for i in range(n)
    ]


def make_llm(api_base: str, timeout: float = 1.0):
    from llama_index.llms.openai import OpenAI

    return OpenAI(
        model="gpt-4o-mini", api_key="test", api_base=api_base, max_retries=0, timeout=timeout
    )


def main(argv: list[str]) -> None:
    from llama_index_finetune_embed import generate_qa_embedding_pairs

    api_base, cache_path, out_json, n = argv[0], argv[1], argv[2], int(argv[3])
    dataset = generate_qa_embedding_pairs(
        make_nodes(n), make_llm(api_base), cache_path=cache_path, **GEN_OPTIONS
    )
    dataset.save_json(out_json)


if __name__ == "__main__":
    main(sys.argv[1:])
