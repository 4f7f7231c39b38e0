"""Which runtime embeds a window index fastest on this machine while reading the same? (no training)

Embeds Uber val's 395 chunks as ``build_window_index`` cuts them (1,441 windows for MiniLM) and
its 790 questions with each runtime, sent longest first in batches of 64, and prints vectors/s,
the ratio to torch fp32 at LlamaIndex's batch of 10, the cosine of each window vector to torch
fp32's (mean and minimum) and NDCG@10 of the window ranking (a chunk scores its best window):

- ``torch fp32 b10`` / ``b64``: sentence-transformers ``encode`` (what ``load_embed_model`` runs);
- ``torch bf16``: bf16 weights (fast only where the CPU has AVX512-BF16/AMX; skipped elsewhere
  unless ``--all``, it is ~6x slower there);
- ``torch int8``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers;
- ``onnxruntime fp32`` / ``int8``: the transformer exported with ``torch.onnx.export`` and run by
  ONNX Runtime (int8: ``onnxruntime.quantization.quantize_dynamic``), pooled and normalized here;
- ``openvino fp32``: the transformer converted with ``openvino.convert_model``.

Runtimes whose package is missing are skipped (``pip install onnxruntime onnx openvino``; the
package itself needs none of them). Usage (~10 minutes on 2 cores)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_runtimes.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_human import SHARED  # noqa: E402

Encode = Callable[[list[str]], np.ndarray]
BATCH = 64


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model path (default: the packaged MiniLM)")
    p.add_argument("--all", action="store_true", help="also bf16 on a CPU without native bf16")
    args = p.parse_args(argv)

    import torch

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed._compat import native_bf16
    from llama_index_finetune_embed.embeddings import load_embed_model, packaged_minilm_path
    from llama_index_finetune_embed.evaluate import RetrievalEvaluator
    from llama_index_finetune_embed.evaluate.fast import DatasetEmbeddings, corpus_windows

    val = EmbeddingQAFinetuneDataset.from_json(SHARED / "seed10k" / "val_dataset.json")
    model_path = args.model or str(packaged_minilm_path())
    model = load_embed_model(model_path, precision="fp32")
    windows, starts = corpus_windows(val, model)
    queries = list(val.queries.values())
    st = model._model
    print(f"{len(windows)} windows of {len(val.corpus)} chunks, {len(queries)} questions; "
          f"torch threads {torch.get_num_threads()}, "
          f"native bf16: {native_bf16('cpu')}")  # fmt: skip
    evaluator = RetrievalEvaluator(val, index="windows", top_k=10)
    runtimes: dict[str, Callable[[], Encode]] = {
        "torch fp32 b10": lambda: _torch(st, 10),
        "torch fp32 b64": lambda: _torch(st, BATCH),
    }
    if args.all or native_bf16("cpu"):
        runtimes["torch bf16 b64"] = lambda: _torch(_copy(st, torch.bfloat16), BATCH)
    runtimes["torch int8 b64"] = lambda: _torch_int8(st)
    tmp = Path(tempfile.mkdtemp(prefix="bench_runtimes-"))
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        runtimes["onnxruntime fp32 b64"] = lambda: _onnxruntime(st, tmp, int8=False)
        runtimes["onnxruntime int8 b64"] = lambda: _onnxruntime(st, tmp, int8=True)
    if importlib.util.find_spec("openvino"):
        runtimes["openvino fp32 b64"] = lambda: _openvino(st)
    reference, base_seconds = None, None
    order = np.argsort([-len(t) for t in windows], kind="stable")
    for name, make in runtimes.items():
        encode = make()
        encode(windows[:BATCH])  # warm-up (first-call graph work)
        start = time.perf_counter()
        vectors = np.empty((len(windows), st.get_sentence_embedding_dimension()))
        vectors[order] = encode([windows[i] for i in order])
        seconds = time.perf_counter() - start
        base_seconds = base_seconds or seconds
        reference = vectors if reference is None else reference
        cos = (vectors * reference).sum(1)
        emb = DatasetEmbeddings(encode(queries), vectors, starts)
        ndcg = evaluator.score_embeddings(emb, name=name).metrics["ndcg"]
        print(f"{name:22s} {seconds:6.1f} s  {len(windows) / seconds:5.1f} vectors/s  "
              f"{base_seconds / seconds:4.2f}x  cosine to fp32 mean {cos.mean():.4f} "
              f"min {cos.min():.4f}  NDCG@10 {100 * ndcg:.1f}", flush=True)  # fmt: skip


def _torch(st: Any, batch: int) -> Encode:
    return lambda texts: st.encode(texts, batch_size=batch, normalize_embeddings=True)


def _copy(st: Any, dtype: Any) -> Any:
    import copy

    return copy.deepcopy(st).to(dtype)


def _pooled(st: Any, forward: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Encode:
    """Tokenize as sentence-transformers does, run ``forward`` (last hidden state), mean-pool
    over the attention mask and normalize: MiniLM's Pooling + Normalize modules."""
    tok, max_len = st.tokenizer, st.max_seq_length

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), BATCH):
            enc = dict(tok(texts[i : i + BATCH], padding=True, truncation=True,
                           max_length=max_len, return_tensors="np"))  # fmt: skip
            hidden = forward(enc)
            mask = enc["attention_mask"][..., None].astype(np.float32)
            v = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.concatenate(out)

    return encode


def _torch_int8(st: Any) -> Encode:
    import copy

    import torch

    bert = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(st[0].auto_model).eval(), {torch.nn.Linear}, dtype=torch.qint8
    )

    def forward(enc: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in enc.items()}
            return bert(**inputs).last_hidden_state.float().numpy()

    return _pooled(st, forward)


def _onnxruntime(st: Any, tmp: Path, int8: bool) -> Encode:
    import onnxruntime as ort

    path = tmp / "model.onnx"
    if not path.exists():
        _export_onnx(st, path)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = tmp / "model-int8.onnx"
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        path = quantized
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return _pooled(st, lambda enc: session.run(None, {k: v for k, v in enc.items()
                                                      if k in names})[0])  # fmt: skip


def _export_onnx(st: Any, path: Path) -> None:
    import torch

    bert = st[0].auto_model.eval()
    enc = st.tokenizer(["a b", "c"], padding=True, return_tensors="pt")
    names = list(enc.keys())

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, *inputs: Any) -> Any:
            return self.bert(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    torch.onnx.export(Hidden(), tuple(enc[n] for n in names), str(path), input_names=names,
                      output_names=["hidden"], dynamic_axes=axes, opset_version=17,
                      dynamo=False)  # fmt: skip


def _openvino(st: Any) -> Encode:
    import openvino as ov

    bert = st[0].auto_model.eval()
    example = dict(st.tokenizer(["a b", "c"], padding=True, return_tensors="pt"))
    compiled = ov.Core().compile_model(ov.convert_model(bert, example_input=example), "CPU")
    output = compiled.output(0)
    return _pooled(st, lambda enc: compiled(enc)[output])


if __name__ == "__main__":
    main()
