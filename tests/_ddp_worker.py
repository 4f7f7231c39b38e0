"""Run by the torchrun test: every rank trains the same engine; rank 0 saves one model."""

from __future__ import annotations

import sys

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine


def main(data: str, model: str, out: str) -> None:
    train = EmbeddingQAFinetuneDataset.from_json(data)
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=model, model_output_path=out, batch_size=2, device="cpu"
    )
    engine.finetune()


if __name__ == "__main__":
    main(*sys.argv[1:4])
