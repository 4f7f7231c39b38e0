"""finetune.losses: the chunk-grouped MNRL equals sentence-transformers' MNRL, encoding less."""

from __future__ import annotations

import pytest
from _finetune_data import QUESTIONS
from conftest import TOY_TEXTS


def test_grouped_loss_encodes_a_shared_chunk_once_and_never_as_its_own_negative(
    tiny_model_path,
):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import cos_sim

    from llama_index_finetune_embed.finetune.losses import GroupedMultipleNegativesRankingLoss

    model = SentenceTransformer(str(tiny_model_path), device="cpu").eval()
    queries = [q for pair in QUESTIONS[:2] for q in pair]
    docs = list(TOY_TEXTS[:4])
    grouped = GroupedMultipleNegativesRankingLoss(model)
    with torch.no_grad():  # distinct positives: exactly sentence-transformers' symmetric MNRL
        ref = MultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"))
        want = ref([model.preprocess(queries), model.preprocess(docs)], None)
        got = grouped([model.preprocess(queries), model.preprocess(docs)], None)
        assert float(got) == pytest.approx(float(want), abs=1e-6)

        calls = []
        hook = model.register_forward_hook(lambda m, i, o: calls.append(len(i[0]["input_ids"])))
        shared = [TOY_TEXTS[0], TOY_TEXTS[0], TOY_TEXTS[1], TOY_TEXTS[1]]
        got = grouped([model.preprocess(queries), model.preprocess(shared)], None)
        hook.remove()
        assert calls == [4, 2]  # four queries, two distinct chunks
        q = model.encode(queries, convert_to_tensor=True)
        d = model.encode(TOY_TEXTS[:2], convert_to_tensor=True)
        owner = torch.tensor([0, 0, 1, 1])
        q2d = cos_sim(q, d) * 20
        d2q = (cos_sim(d[owner], q) * 20).masked_fill(
            (owner[:, None] == owner[None, :]) & ~torch.eye(4, dtype=torch.bool), -torch.inf
        )
        log_z = torch.logsumexp(torch.cat([q2d, d2q], dim=1), dim=1)
        want = -(q2d[torch.arange(4), owner] - log_z).mean()
        assert float(got) == pytest.approx(float(want), abs=1e-5)

        # chunks embedded in length-sorted slices, each padded to its own longest: same loss
        docs = [TOY_TEXTS[0][:40], TOY_TEXTS[1], TOY_TEXTS[2][:90], TOY_TEXTS[3]]
        features = [model.preprocess(queries), model.preprocess(docs)]
        whole = GroupedMultipleNegativesRankingLoss(model, slice_rows=100)(features, None)
        sliced = GroupedMultipleNegativesRankingLoss(model, slice_rows=1)
        calls = []
        hook = model.register_forward_hook(lambda m, i, o: calls.append(i[0]["input_ids"].shape))
        assert float(sliced(features, None)) == pytest.approx(float(whole), abs=1e-5)
        hook.remove()
        widths = [shape[1] for shape in calls[1:]]  # longest first, each slice trimmed
        assert len(calls) == 5 and widths == sorted(widths, reverse=True) and widths[-1] < widths[0]
