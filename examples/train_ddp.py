"""Finetune on several GPUs or machines: run this script under ``torchrun``, one process per device.

Every rank builds the same engine on the same dataset; sentence-transformers' trainer splits each
batch across the ranks (DDP: NCCL on GPUs, gloo on CPUs), so ``--batch-size`` chunks per rank
make ``ranks x batch-size`` chunks per step (the in-batch negatives of one rank are its own).
Rank 0 saves the one model to ``--out``, with the ``serving.json`` and ``metrics.json`` a
one-process run writes; load it with ``load_finetuned_model(out)``.

Usage (docs/scale.md; a test runs this command with 2 CPU ranks):
    torchrun --nproc_per_node 2 --standalone examples/train_ddp.py \\
        runs/mydocs/train_dataset.json --model local:all-MiniLM-L6-v2 --out runs/mydocs/model-ddp
    # two machines with 8 GPUs each, from each machine:
    #   torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
    #       --rdzv_endpoint HOST:29500 examples/train_ddp.py train.json --model ... --out ...
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("train", help="training dataset JSON (llama-index-finetuning format)")
    p.add_argument("--model", default="local:all-MiniLM-L6-v2", help="base model id or path")
    p.add_argument("--out", required=True, help="model directory rank 0 writes")
    p.add_argument("--val", default=None, help="validation dataset JSON (keeps the best step)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="chunks per step on each rank (default: the engine's)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="default: the engine's")
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.finetune import SentenceTransformersFinetuneEngine

    options = {k: v for k, v in (("batch_size", args.batch_size), ("epochs", args.epochs)) if v}
    engine = SentenceTransformersFinetuneEngine(
        EmbeddingQAFinetuneDataset.from_json(args.train),
        model_id=args.model,
        model_output_path=args.out,
        val_dataset=EmbeddingQAFinetuneDataset.from_json(args.val) if args.val else None,
        device=None if torch.cuda.is_available() else "cpu",
        **options,
    )
    engine.finetune()
    if dist.is_initialized():  # as a torchrun script should end
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
