"""Where the local question writer's time goes: prefill vs decode, each against this CPU's limit.

Measured in one process: the CPU's GEMM peak in the LLM's dtype (square matmuls) and its memory
bandwidth (a 1 GiB copy); then, for the first ``--chunks`` chunks of ../shared/data/seed10k's
val corpus templated exactly as the held-out question writer sends them
(``LocalLLM.question_writer``, batches of ``batch_size``, left-padded), one greedy
``generate`` per batch with ``max_new_tokens=1`` (the prefill) and one with the writer's own
``max_new_tokens`` (the whole call). Prefill GFLOP/s counts 2 x parameters x prompt tokens
(padding included, attention left out); decode GB/s counts the weights read once per step.

``--passes``: the three answer prefixes the offline writer tries (What, How, Which) asked one
whole ``generate`` per prefix (the writer before #35), against what the package does now for
passes that read one passage: one prefill of the prompt (the template's shared head read once a
batch) and the prefixes decoded in one batch from copies of its KV cache: the time of each and
how many first lines both wrote the same (``--dtype float32``: exact; bf16 rounds differently
when the prompt is read in another shape).

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_local_llm.py --chunks 32
    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_local_llm.py --chunks 16 --passes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VAL = ROOT.parent / "shared" / "data" / "seed10k" / "val_dataset.json"


def gemm_peak(dtype) -> float:
    """GFLOP/s of the best of a few 2048-square matmuls in ``dtype``."""
    import torch

    a, b = (torch.randn(2048, 2048).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best / 1e9


def bandwidth() -> float:
    """GB/s of a 1 GiB copy (bytes read + written), the best of 3."""
    import torch

    x = torch.empty(2**28, dtype=torch.float32).fill_(1.0)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        x.clone()
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * 4 / best / 1e9


def generate(model, tokenizer, texts, max_new_tokens, penalty):
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=1024,
                    add_special_tokens=False)  # fmt: skip
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             repetition_penalty=penalty,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    prompt = enc["input_ids"]
    return time.perf_counter() - t0, prompt.numel(), out.shape[1] - prompt.shape[1]


def passes(writer, model, tokenizer, corpus, template) -> None:
    """Three prefixes: one whole ``generate`` per prefix (the writer before #35) against the
    package's one read of each prompt with every prefix decoded from it (``assistant_prefixes``,
    ``_gguf.generate_greedy_each``)."""
    from llama_index.core.llms import ChatMessage

    from llama_index_finetune_embed.generate._gguf import generate_greedy, generate_greedy_each

    settings = {"max_prompt_tokens": writer.max_prompt_tokens,
                "max_new_tokens": writer.max_new_tokens,
                "repetition_penalty": writer.repetition_penalty}  # fmt: skip
    bare = writer.with_options(assistant_prefixes=["What"])  # the template without a prefix

    def first_line(text):
        return text.split("\n")[0]

    prefixes, seconds, same, total = ("What", "How", "Which"), [0.0, 0.0], 0, 0
    for at in range(0, len(corpus), writer.batch_size):
        base = [bare._template([ChatMessage(role="user", content=template.format(context_str=t))])
                for t in corpus[at : at + writer.batch_size]]  # fmt: skip
        t0 = time.perf_counter()
        whole = [[first_line(g.text) for g in generate_greedy(model, tokenizer,
                                                              [b + p for b in base], **settings)]
                 for p in prefixes]  # fmt: skip
        seconds[0] += time.perf_counter() - t0
        t0 = time.perf_counter()
        each = generate_greedy_each(model, tokenizer, base, prefixes, **settings)
        seconds[1] += time.perf_counter() - t0
        for j in range(len(prefixes)):
            same += sum(whole[j][i] == first_line(each[i][j].text) for i in range(len(base)))
            total += len(base)
    print(f"{len(corpus)} prompts x 3 prefixes, {next(model.parameters()).dtype}, "
          f"batches of {writer.batch_size}\n")  # fmt: skip
    print("| how | seconds |\n|:--|--:|")
    print(f"| a whole call per prefix (before #35) | {seconds[0]:.1f} |")
    print(f"| one read, the prefixes decoded in one batch (the package) | {seconds[1]:.1f} |")
    print(f"\nratio {seconds[1] / seconds[0]:.2f}x the time; same first lines {same}/{total}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--passes", action="store_true", help="the KV-reuse prototype")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    args = parser.parse_args()
    if not VAL.is_file():
        print(f"skipped: {VAL} not found (../shared is not beside this checkout)")
        return 0
    import torch
    from llama_index.core.llms import ChatMessage

    from llama_index_finetune_embed.generate import LocalLLM
    from llama_index_finetune_embed.generate.llms import QUESTION_PROMPT_TMPL

    writer = LocalLLM(dtype=args.dtype).question_writer()
    model, tokenizer = writer._load()
    if args.passes:  # the passages the package shows (first pass), not whole chunks
        from llama_index.core.schema import TextNode

        from llama_index_finetune_embed.generate.offline import OfflineSettings, passage_nodes

        corpus = json.loads(VAL.read_text(encoding="utf-8"))["corpus"]
        nodes = [TextNode(id_=k, text=v) for k, v in list(corpus.items())[: args.chunks]]
        shown, _ = passage_nodes(nodes, 0, OfflineSettings())
        passes(writer, model, tokenizer, [n.get_content() for n in shown], QUESTION_PROMPT_TMPL)
        return 0
    dtype = next(model.parameters()).dtype
    params = sum(p.numel() for p in model.parameters())
    peak, gbs = gemm_peak(dtype), bandwidth()
    corpus = list(json.loads(VAL.read_text(encoding="utf-8"))["corpus"].values())[: args.chunks]
    prompts = [writer._template([ChatMessage(role="user",
                                             content=QUESTION_PROMPT_TMPL.format(context_str=t))])
               for t in corpus]  # fmt: skip
    prefill_s = total_s = tokens = steps = 0.0
    for at in range(0, len(prompts), writer.batch_size):
        batch = prompts[at : at + writer.batch_size]
        s1, n_tokens, _ = generate(model, tokenizer, batch, 1, writer.repetition_penalty)
        s2, _, n_new = generate(model, tokenizer, batch, writer.max_new_tokens,
                                writer.repetition_penalty)  # fmt: skip
        prefill_s, total_s = prefill_s + s1, total_s + s2
        tokens, steps = tokens + n_tokens, steps + n_new - 1
    decode_s = max(total_s - prefill_s, 1e-9)
    prefill_gflops = 2 * params * tokens / prefill_s / 1e9
    decode_gbs = params * torch.finfo(dtype).bits / 8 * steps / decode_s / 1e9
    print(f"SmolLM2-135M ({params / 1e6:.0f}M parameters, {dtype}), {len(prompts)} prompts in "
          f"batches of {writer.batch_size}, max_new_tokens {writer.max_new_tokens}")
    print(f"this CPU: GEMM {peak:.0f} GFLOP/s ({dtype}), memory copy {gbs:.1f} GB/s\n")
    print("| part | seconds | share of the calls | rate | of the limit |\n|:--|--:|--:|--:|--:|")
    print(f"| prefill ({tokens:,.0f} prompt tokens, padding included) | {prefill_s:.1f} | "
          f"{prefill_s / total_s:.0%} | {tokens / prefill_s:,.0f} tokens/s = {prefill_gflops:.0f} "
          f"GFLOP/s | {prefill_gflops / peak:.0%} of GEMM |")
    print(f"| decode ({steps:.0f} steps of a batch) | {decode_s:.1f} | {decode_s / total_s:.0%} | "
          f"{decode_s / max(steps, 1) * 1000:.0f} ms/step = {decode_gbs:.1f} GB/s of weights | "
          f"{decode_gbs / gbs:.0%} of the copy |")
    print(f"| whole calls | {total_s:.1f} | 100% | {total_s / len(prompts):.2f} s a prompt | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
