"""The adapter's training loop over cached base-model vectors (private to the adapter stage).

In-batch negatives: cross-entropy over ``scale`` x cosine(adapted query, chunk), a query's other
relevant chunks masked out rather than used as negatives. Weight decay pulls the weights back to
where they started (the identity for ``LinearLayer`` and for ``TwoLayerNN(add_residual=True)``),
i.e. the adapter towards the base model, not towards zero. With a val set the best epoch by
MRR@10 is kept, epoch 0 (the untrained adapter) included.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llama_index_finetune_embed.adapter._embed_cache import EmbeddedDataset
from llama_index_finetune_embed.evaluate import mrr_at_k

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """What one training run needs (the engine checks the values)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    scale: float
    seed: int
    device: str
    show_progress: bool
    checkpoint_path: Path | None = None
    checkpoint_save_steps: int = 100
    optimizer_class: Any = None
    optimizer_params: dict[str, Any] | None = None


def train_adapter(
    module: Any, train: EmbeddedDataset, val: EmbeddedDataset | None, s: TrainSettings
) -> list[dict[str, float]]:
    """Train ``module`` in place (left on the CPU, in eval mode); return the per-epoch history."""
    import torch

    module.to(s.device)
    queries = torch.as_tensor(train.queries, device=s.device)
    docs = torch.nn.functional.normalize(torch.as_tensor(train.docs, device=s.device), dim=-1)
    pairs = [(qi, di) for qi, rel in enumerate(train.relevant) for di in sorted(rel)]
    optimizer = _optimizer(module, s)
    start = [p.detach().clone() for p in module.parameters()]
    rng, history, step = random.Random(s.seed), [], 0
    best = (val_mrr(module, val, s.device), 0, _state_copy(module)) if val else None
    epochs: Any = range(1, s.epochs + 1)
    if s.show_progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="Training adapter")
    for epoch in epochs:
        rng.shuffle(pairs)
        module.train()
        losses = []
        for i in range(0, len(pairs), s.batch_size):
            losses.append(train_step(module, optimizer, queries, docs, train.relevant,
                                     pairs[i : i + s.batch_size], s.scale))  # fmt: skip
            _decay_towards(module, start, s.learning_rate * s.weight_decay)
            step += 1
            if s.checkpoint_path is not None and step % s.checkpoint_save_steps == 0:
                _save_checkpoint(module, s.checkpoint_path / f"step_{step}")
        record = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val is not None and best is not None:
            record["val_mrr@10"] = val_mrr(module, val, s.device)
            if record["val_mrr@10"] > best[0]:
                best = (record["val_mrr@10"], epoch, _state_copy(module))
        logger.info("adapter epoch %s", record)
        history.append(record)
    if best is not None:
        module.load_state_dict(best[2])
        logger.info("kept epoch %d (val MRR@10 %.4f)", best[1], best[0])
    module.cpu().eval()
    return history


def train_step(
    module: Any,
    optimizer: Any,
    queries: Any,
    docs: Any,
    relevant: list[set[int]],
    batch: list[tuple[int, int]],
    scale: float,
) -> float:
    """One optimizer step on ``batch`` (query row, chunk row) pairs; return the loss."""
    import torch

    qi = torch.tensor([q for q, _ in batch], device=queries.device)
    di = [d for _, d in batch]
    adapted = torch.nn.functional.normalize(module(queries[qi]), dim=-1)
    logits = adapted @ docs[di].T * scale
    # another row's chunk that is also relevant to this query is no negative
    mask = torch.tensor(
        [[a != b and d in relevant[q] for b, d in enumerate(di)] for a, (q, _) in enumerate(batch)],
        device=logits.device,
    )
    logits = logits.masked_fill(mask, float("-inf"))
    target = torch.arange(len(batch), device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def val_mrr(module: Any, val: EmbeddedDataset | None, device: str) -> float:
    """MRR@10 of the adapted val queries against the val chunks."""
    import torch

    assert val is not None
    module.eval()
    with torch.no_grad():
        adapted = module(torch.as_tensor(val.queries, device=device)).cpu().numpy()
    return mrr_at_k(adapted, val.docs, val.relevant, k=10)


def _optimizer(module: Any, s: TrainSettings) -> Any:
    import torch

    params = dict(s.optimizer_params or {})
    params.setdefault("lr", s.learning_rate)
    if s.optimizer_class is None:  # decay is ours (towards the start), not AdamW's
        return torch.optim.AdamW(module.parameters(), **{"weight_decay": 0.0, **params})
    return s.optimizer_class(module.parameters(), **params)


def _decay_towards(module: Any, start: list[Any], rate: float) -> None:
    import torch

    if rate <= 0:
        return
    with torch.no_grad():
        for p, p0 in zip(module.parameters(), start, strict=True):
            p.sub_(rate * (p - p0))


def _save_checkpoint(module: Any, path: Path) -> None:
    """``BaseAdapter.save`` from the CPU, as the reference's checkpoints (``step_<n>``)."""
    state = _state_copy(module)
    device = next(module.parameters()).device
    module.cpu().save(str(path))
    module.load_state_dict(state)
    module.to(device)


def _state_copy(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
