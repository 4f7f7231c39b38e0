"""Run by the torchrun test: every rank trains the same engine; rank 0 saves one model."""

from __future__ import annotations

import sys

import torch.distributed as dist

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine


def main(data: str, model: str, out: str) -> None:
    train = EmbeddingQAFinetuneDataset.from_json(data)
    engine = SentenceTransformersFinetuneEngine(
        train, model_id=model, model_output_path=out, batch_size=2, device="cpu"
    )
    engine.finetune()
    if dist.is_initialized():  # as a torchrun script should end
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
