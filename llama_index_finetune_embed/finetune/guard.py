"""The guard: ``finetune()`` hands back a model only where it does not lose to its base.

Generated questions are a convenient training signal but a weak yardstick: a model can gain on
them and lose on the questions people ask (``benchmarks/bench_human.py``). So after training,
the finetuned model and its base are both scored (NDCG@10, per query) on

* ``canary``: 171 questions people wrote about a general subject (the Python FAQ, shipped in
  ``data/``), which catches a recipe that forgets how to retrieve in general, and
* ``val``: the held-out questions, when a ``val_dataset`` was given (split by chunk, as
  ``dataset.split`` and the main job do, so that none of its chunks was trained on).

Both are judged in the form the model is served in: with ``window_length`` (the engine passes the
window length it records for ``build_window_index``, which the main job serves unless its report
measured another row better), each chunk is cut into the windows that index stores and scores its
best window, for the base (at its served length) and the candidate alike, so the check sees what
training did to the served model; without it, chunks are embedded whole as a plain index does (long
texts truncated). A model *loses* on a check when its mean NDCG@10 is more than ``tolerance``
points below the base's, or the paired-bootstrap 95% interval of the difference is entirely below
0. When it loses, closer weight-space averages with the base are tried (half, then three quarters
of the way back to the base: WiSE-FT, Wortsman et al. 2022; after the engine's default average with
base share 0.5 that is a base share of 0.75, then 0.875), and the first that loses nowhere is kept;
if every one loses, the base weights themselves are handed back. What was checked and decided goes
into ``metrics.json`` (``"guard"``), the model card and the main job's report. """

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from llama_index.core.bridge.pydantic import BaseModel, Field

from llama_index_finetune_embed.dataset import EmbeddingQAFinetuneDataset

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

CANARY_PATH = Path(__file__).parents[1] / "data" / "canary_python_faq.json"
METRIC = "ndcg@10"


def load_canary() -> EmbeddingQAFinetuneDataset:
    """The packaged canary set: 171 Python-FAQ questions written by people, and their answers.

    Example:
        >>> canary = load_canary()
        >>> len(canary.queries)
        171
    """
    return EmbeddingQAFinetuneDataset.from_json(CANARY_PATH)


class GuardCheck(BaseModel):
    """One check of one candidate: NDCG@10 x100 of base and candidate, and their difference."""

    name: str
    queries: int
    base: float
    model: float
    delta: float
    ci: tuple[float, float] = Field(description="paired-bootstrap 95% interval of the delta")
    loses: bool


class GuardReport(BaseModel):
    """What the guard checked, what it tried and which weights it handed back."""

    decision: Literal["finetuned", "averaged", "base"]
    base_weight: float = Field(description="base share of the weights handed back (0 = as trained)")
    tolerance: float
    checks: list[GuardCheck] = Field(description="the checks of the weights handed back")
    tried: list[dict[str, Any]] = Field(default_factory=list, description="every candidate")

    @property
    def message(self) -> str:
        """One plain sentence for the log and the report."""
        worst = ", ".join(
            f"{c.name} NDCG@10 {c.base:.1f} -> {c.model:.1f}" for c in self.checks
        )
        first = self.tried[0]["base_weight"] if self.tried else 0.0
        model = "the finetuned model" + (f" (base weight {first:.2f})" if first else "")
        if self.decision == "finetuned":
            return f"guard: {model} does not lose to its base ({worst})"
        lost = "; ".join(
            f"{c['name']} {c['delta']:+.1f}" for c in self.tried[0]["checks"] if c["loses"]
        )
        if self.decision == "averaged":
            return (
                f"guard: {model} lost to its base ({lost} NDCG@10 points); handing back a "
                f"closer average with the base (base weight {self.base_weight:.2f}), which "
                f"does not lose ({worst})"
            )
        return (
            f"guard: {model} and its closer averages with the base all lost to the base "
            f"({lost} NDCG@10 points); handing back the base model's weights unchanged"
        )


class RetrievalGuard:
    """Scores a model against its base on held-out checks and keeps weights that do not lose.

    Args:
        checks: name -> dataset (default: the packaged canary).
        query_prompt, document_prompt: the prompts the model is trained and served with.
        tolerance: NDCG@10 points a model may trail the base by on a check (see module docs).
        fallback_base_weights: base shares of the averages tried when the model loses.
        window_length: score in windows of this many tokens (the served form; ``None``: each
            chunk embedded whole, truncated at the model's length).

    Example:
        >>> guard = RetrievalGuard({"canary": load_canary()})  # doctest: +SKIP
        >>> guard.score_base(model)  # before training  # doctest: +SKIP
        >>> report = guard.decide(model, base_state)  # after training  # doctest: +SKIP
    """

    def __init__(
        self,
        checks: Mapping[str, EmbeddingQAFinetuneDataset] | None = None,
        *,
        query_prompt: str = "",
        document_prompt: str = "",
        tolerance: float = 1.0,
        fallback_base_weights: Sequence[float] = (0.5, 0.75),
        window_length: int | None = None,
    ) -> None:
        if window_length is not None and window_length < 8:
            raise ValueError(f"window_length must be at least 8 tokens, got {window_length!r}")
        self.window_length = window_length
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 NDCG@10 points, got {tolerance}")
        self.checks = dict(checks) if checks is not None else {"canary": load_canary()}
        self.prompts = (query_prompt, document_prompt)
        self.tolerance = tolerance
        self.fallback_base_weights = tuple(fallback_base_weights)
        self._base: dict[str, Any] = {}

    def score_base(self, model: SentenceTransformer, max_seq_length: int | None = None) -> None:
        """Score the base model (call before training), as it is served: at ``max_seq_length``,
        and with ``window_length`` set, in windows of that length (the base's own length when
        ``max_seq_length`` is given: handed back, the base is served at its own lengths)."""
        saved = model.max_seq_length
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        window = (max_seq_length or self.window_length) if self.window_length else None
        try:
            self._base = {
                name: self._score(model, ds, "base", window) for name, ds in self.checks.items()
            }
        finally:
            model.max_seq_length = saved

    def decide(
        self,
        model: SentenceTransformer,
        base_state: Mapping[str, torch.Tensor],
        *,
        base_weight: float = 0.0,
    ) -> GuardReport:
        """Check ``model``; if it loses, average it with ``base_state`` in place (see module).

        ``base_weight``: the base's share already in ``model`` (the engine's own average), so
        that the report states the base's share of the weights handed back.
        """
        from llama_index_finetune_embed.finetune.model import average_with_base, weights_copy

        if not self._base:
            raise RuntimeError("RetrievalGuard.score_base(model) must run before training")
        trained = weights_copy(model)
        tried = []
        for weight in (0.0, *self.fallback_base_weights):
            if weight:
                model.load_state_dict(trained)
                average_with_base(model, base_state, weight)
            checks = self.evaluate(model)
            share = 1.0 - (1.0 - base_weight) * (1.0 - weight)
            tried.append({"base_weight": share, "checks": [c.model_dump() for c in checks]})
            if not any(c.loses for c in checks):
                decision = "finetuned" if weight == 0.0 else "averaged"
                return self._report(decision, share, checks, tried)
        model.load_state_dict(dict(base_state))
        return self._report("base", 1.0, self._base_checks(), tried)

    def evaluate(self, model: SentenceTransformer) -> list[GuardCheck]:
        """Every check of ``model`` against the base scores."""
        from llama_index_finetune_embed.evaluate import ComparisonTable

        out = []
        for name, ds in self.checks.items():
            base, mine = self._base[name], self._score(model, ds, "model", self.window_length)
            diff = ComparisonTable.from_results([base, mine]).paired_diff("model", METRIC)
            delta, lo, hi = 100 * diff.delta, 100 * diff.ci[0], 100 * diff.ci[1]
            out.append(
                GuardCheck(
                    name=name,
                    queries=len(ds.queries),
                    base=100 * base.metrics[METRIC],
                    model=100 * mine.metrics[METRIC],
                    delta=delta,
                    ci=(lo, hi),
                    loses=bool(delta < -self.tolerance or hi < 0),
                )
            )
        return out

    def _base_checks(self) -> list[GuardCheck]:
        return [
            GuardCheck(name=n, queries=r.num_queries, base=100 * r.metrics[METRIC],
                       model=100 * r.metrics[METRIC], delta=0.0, ci=(0.0, 0.0), loses=False)
            for n, r in self._base.items()
        ]  # fmt: skip

    def _report(
        self, decision: str, weight: float, checks: list[GuardCheck], tried: list[dict[str, Any]]
    ) -> GuardReport:
        report = GuardReport(
            decision=decision, base_weight=weight, tolerance=self.tolerance, checks=checks,
            tried=tried,
        )  # fmt: skip
        (logger.info if decision == "finetuned" else logger.warning)(report.message)
        return report

    def _score(
        self, model: SentenceTransformer, ds: EmbeddingQAFinetuneDataset, name: str,
        window: int | None,
    ) -> Any:
        from llama_index_finetune_embed.evaluate import DatasetEmbeddings, evaluate_embeddings

        query_prompt, doc_prompt = self.prompts
        queries = _encode(model, list(ds.queries.values()), query_prompt)
        texts, starts = list(ds.corpus.values()), None
        if window and getattr(model.tokenizer, "is_fast", False):
            texts, starts = _windows(model, texts, window, doc_prompt)
        corpus = _encode(model, texts, doc_prompt)
        return evaluate_embeddings(
            ds, DatasetEmbeddings(queries, corpus, starts), top_k=10, name=name, n_resamples=1000
        )


def _windows(
    model: SentenceTransformer, texts: list[str], length: int, prompt: str
) -> tuple[list[str], np.ndarray]:
    """(every text's windows of ``length`` tokens with special tokens and ``prompt``, first window
    of each text): what ``build_window_index`` stores for these chunks."""
    from llama_index_finetune_embed.serving import tokenizer_splitter

    tokenizer = model.tokenizer
    used = tokenizer.num_special_tokens_to_add(pair=False)
    if prompt:
        used += len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    splitter = tokenizer_splitter(tokenizer, max(8, length - used))
    windows: list[str] = []
    starts = []
    for text in texts:
        starts.append(len(windows))
        windows += splitter.split_text(text)
    return windows, np.asarray(starts, dtype=np.int64)


def _encode(model: SentenceTransformer, texts: list[str], prompt: str) -> np.ndarray:
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            vectors = model.encode(
                texts, prompt=prompt or None, batch_size=32, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )  # fmt: skip
    finally:
        model.train(was_training)
    return np.asarray(vectors, dtype=np.float64)


__all__ = ["GuardCheck", "GuardReport", "RetrievalGuard", "load_canary"]
