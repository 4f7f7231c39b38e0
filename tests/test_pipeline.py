"""The main job: its report lines (the guard's decision, the few-questions note) and its stages."""

from __future__ import annotations

import json

import pytest

from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
from llama_index_finetune_embed.finetune.guard import GuardCheck, GuardReport
from llama_index_finetune_embed.pipeline.report import _few_questions_note, _guard_lines


def _metrics_with_guard(tmp_path, decision: str, weight: float):
    lost = GuardCheck(name="canary", queries=171, base=80.0, model=20.0, delta=-60.0,
                      ci=(-65.0, -55.0), loses=True)
    kept = GuardCheck(name="canary", queries=171, base=80.0, model=80.0, delta=0.0,
                      ci=(0.0, 0.0), loses=False)
    report = GuardReport(
        decision=decision, base_weight=weight, tolerance=1.0, checks=[kept],
        tried=[{"base_weight": 0.0, "checks": [lost.model_dump(mode="json")]}],
    )
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"guard": {"message": report.message,
                                          **report.model_dump(mode="json")}}))
    return path


def test_report_says_when_the_guard_handed_back_the_base(tmp_path):
    lines = _guard_lines(_metrics_with_guard(tmp_path, "base", 1.0))
    assert lines[0].startswith("- guard: the finetuned model and its closer averages with the base")
    assert "canary -60.0 NDCG@10 points" in lines[0] and "base model's weights" in lines[0]
    assert "canary (171 questions) 80.0 -> 20.0 [-65.0, -55.0]" in lines[1]


def test_report_says_when_the_guard_averaged(tmp_path):
    lines = _guard_lines(_metrics_with_guard(tmp_path, "averaged", 0.5))
    assert "a closer average with the base (base weight 0.50)" in lines[0]


def test_report_without_guard_or_metrics(tmp_path):
    assert _guard_lines(tmp_path / "missing.json") == []
    (tmp_path / "m.json").write_text("{}")
    assert _guard_lines(tmp_path / "m.json") == ["- guard: off"]


def test_few_held_out_questions_are_called_out():
    def ds(n):
        return EmbeddingQAFinetuneDataset(
            queries={f"q{i}": f"q {i}?" for i in range(n)},
            corpus={f"c{i}": f"chunk {i}" for i in range(150)},
            relevant_docs={f"q{i}": [f"c{i}"] for i in range(n)},
        )

    note = _few_questions_note(ds(20))
    assert len(note) == 1 and "only 20 held-out questions" in note[0]
    assert "150 held-out chunks" in note[0]
    assert _few_questions_note(ds(120)) == []


def test_offline_training_pairs_come_from_at_most_max_train_chunks(tmp_path):
    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.pipeline import RunConfig, training_pairs

    nodes = [
        TextNode(id_=f"n{i}", text=f"Topic {i} starts here. It has a second sentence about "
             f"item {i}. A third sentence closes topic {i} for good.")
        for i in range(30)
    ]  # fmt: skip

    def chunks_used(cap: int) -> set[str]:
        config = RunConfig(out=str(tmp_path), max_train_chunks=cap)
        ds = training_pairs(nodes, "none", None, config, tmp_path / f"cache{cap}.jsonl")
        return {d for ids in ds.relevant_docs.values() for d in ids}

    used = chunks_used(10)
    assert len(used) == 10 and used < {n.node_id for n in nodes}
    assert chunks_used(10) == used  # the same sample for the same seed
    assert len(chunks_used(1000)) == 30


def test_a_new_max_train_chunks_keeps_the_question_cache(tmp_path):
    from types import SimpleNamespace

    from llama_index.core.schema import TextNode

    from llama_index_finetune_embed.pipeline import RunConfig, stage_inputs
    from llama_index_finetune_embed.pipeline.stages import Job, _cache_for

    nodes = [TextNode(id_=f"n{i}", text=f"Chunk {i}.") for i in range(3)]
    choices = SimpleNamespace(llm="local", base_model="/m")

    def cache(**settings):
        config = RunConfig(out=str(tmp_path), **settings)
        job = Job(config, choices, tmp_path, stage_inputs(config, choices))
        return _cache_for("train", nodes, job)

    assert cache(max_train_chunks=10) == cache(max_train_chunks=500)
    assert cache(max_train_chunks=10) != cache(max_train_chunks=10, questions_per_chunk=3)


# -- choosing an LLM ------------------------------------------------------------------------------


def test_make_llm_resolves_the_local_marker_once():
    from llama_index_finetune_embed import LocalLLM
    from llama_index_finetune_embed.pipeline import make_llm

    assert make_llm("none") is None
    assert isinstance(make_llm("local"), LocalLLM)


@pytest.mark.parametrize(
    ("llm", "environ", "expected"),
    [
        ("auto", {}, "local"),
        ("auto", {"OPENAI_API_KEY": "k"}, "openai:gpt-4o-mini"),
        ("openai", {"OPENAI_API_KEY": "k"}, "openai:gpt-4o-mini"),
        ("none", {}, "none"),
    ],
)
def test_resolve_choices(llm, environ, expected):
    from types import SimpleNamespace

    from llama_index_finetune_embed.pipeline import resolve_choices

    config = SimpleNamespace(llm=llm, base_model="org/some-model")
    choices = resolve_choices(config, environ=environ)
    assert choices.llm == expected and choices.base_model == "org/some-model"


def test_resolve_choices_errors(tmp_path):
    from types import SimpleNamespace

    from llama_index_finetune_embed.pipeline import resolve_choices

    def choose(llm, base_model="org/some-model"):
        return resolve_choices(SimpleNamespace(llm=llm, base_model=base_model), environ={})

    with pytest.raises(ValueError, match="needs OPENAI_API_KEY"):
        choose("openai:gpt-4o")
    with pytest.raises(ValueError, match="unknown --llm 'gpt-4'"):
        choose("gpt-4")
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        choose("none", str(tmp_path / "missing" / "model"))


def test_run_config_default_is_the_packaged_minilm_alias():
    """config.py imports nothing of the package, so it spells the alias out: the same one."""
    from llama_index_finetune_embed.embeddings import LOCAL_MINILM
    from llama_index_finetune_embed.pipeline import RunConfig

    assert RunConfig(out="x").base_model == LOCAL_MINILM


def test_the_stage_table_is_the_ledger_order():
    """One row per stage, in the order a redo cascades; every row fingerprints its inputs."""
    from types import SimpleNamespace

    from llama_index_finetune_embed.pipeline import STAGES, RunConfig, stage_inputs

    assert STAGES == ("chunks", "split", "generate", "finetune", "evaluate", "index")
    choices = SimpleNamespace(llm="local", base_model="/m")
    inputs = stage_inputs(RunConfig(out="x"), choices)
    assert tuple(inputs) == STAGES and all(isinstance(v, dict) and v for v in inputs.values())


# -- the index stage: every file it wrote and the model it serves decide its reuse (issue #28) ---


def _cheap_run(monkeypatch, corpus, out, base_model, served_row, **settings):
    """``run_pipeline`` with finetune (a copy of the base) and evaluate (``served_row`` chosen,
    no scoring) stubbed: seconds, and the index stage and the ledger are the real ones.
    Returns the lines the run announced."""
    import dataclasses
    import shutil

    from llama_index_finetune_embed.pipeline import RunConfig, run, run_pipeline
    from llama_index_finetune_embed.pipeline.serve import served_form
    from llama_index_finetune_embed.pipeline.stages import BASE_ROW

    def finetune(job):
        shutil.copytree(base_model, job.model_dir, dirs_exist_ok=True)
        return {}

    def evaluate(job):
        for name in ("report.md", "report.json", "report.png"):
            (job.out / name).write_text("stub")
        job.served = {"row": served_row, **served_form(served_row, BASE_ROW)}
        return {"table_markdown": "", "metrics": {}, "served": job.served}

    stubs = {"finetune": finetune, "evaluate": evaluate}
    table = tuple(dataclasses.replace(s, make=stubs.get(s.name, s.make)) for s in run.STAGE_TABLE)
    monkeypatch.setattr(run, "STAGE_TABLE", table)
    config = RunConfig(out=str(out), docs=[str(corpus)], llm="none", base_model=str(base_model),
                       chunk_size=128, chunk_overlap=8, val_ratio=0.3, **settings)  # fmt: skip
    lines: list[str] = []
    run_pipeline(config, announce=lines.append)
    return lines


def _index_lines(lines):
    """What a run said it did with the index stage (planned, then changed on the way)."""
    return [line for line in lines if line.startswith(("index: reused", "index: redo"))]


def test_a_missing_or_damaged_index_file_rebuilds_the_index(
    corpus, tiny_model_path, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    _cheap_run(monkeypatch, corpus, out, tiny_model_path, "finetuned + windows")
    record = json.loads((out / "stages.json").read_text())["stages"]["index"]
    written = {p.relative_to(out).as_posix() for p in (out / "index").rglob("*") if p.is_file()}
    assert set(record["outputs"]) == written  # every file of the index, as persisted
    assert {"index/default__vector_store.json", "index/docstore.json",
            "index/index_store.json", "index/window_index.json"} <= written  # fmt: skip

    (out / "index" / "default__vector_store.json").unlink()
    lines = _cheap_run(monkeypatch, corpus, out, tiny_model_path, "finetuned + windows")
    assert "finetune: reused (inputs unchanged)" in lines
    assert _index_lines(lines)[-1] == "index: redo (default__vector_store.json is missing)"
    assert (out / "index" / "default__vector_store.json").is_file()

    (out / "index" / "index_store.json").write_text('{"truncated": ')  # damaged in place
    lines = _cheap_run(monkeypatch, corpus, out, tiny_model_path, "finetuned + windows")
    assert _index_lines(lines)[-1] == "index: redo (index_store.json changed since it was written)"
    json.loads((out / "index" / "index_store.json").read_text())  # rebuilt whole

    lines = _cheap_run(monkeypatch, corpus, out, tiny_model_path, "finetuned + windows")
    assert _index_lines(lines) == ["index: reused (inputs unchanged)"]


@pytest.mark.parametrize("served_row", ["finetuned + windows", "base (as LlamaIndex loads it)"])
def test_a_replaced_served_model_rebuilds_the_index(
    corpus, tiny_model_path, tmp_path, monkeypatch, served_row
):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    _cheap_run(monkeypatch, corpus, out, tiny_model_path, served_row)
    vectors = (out / "index" / "default__vector_store.json").read_text()
    record = json.loads((out / "stages.json").read_text())["stages"]["index"]
    assert record["reads"]["model"] == served_row.split(" ")[0]

    # the served model's weights replaced in place (the base: updated where it lives)
    served = out / "model" if served_row.startswith("finetuned") else tiny_model_path
    weights = load_file(served / "model.safetensors")
    save_file({k: v + 0.05 if v.is_floating_point() else v for k, v in weights.items()},
              served / "model.safetensors")  # fmt: skip
    lines = _cheap_run(monkeypatch, corpus, out, tiny_model_path, served_row)
    assert "finetune: reused (inputs unchanged)" in lines
    assert "evaluate: reused (inputs unchanged)" in lines
    (why,) = [line for line in _index_lines(lines) if "redo" in line]
    assert why.startswith("index: redo (model files ")
    assert (out / "index" / "default__vector_store.json").read_text() != vectors  # new vectors

    lines = _cheap_run(monkeypatch, corpus, out, tiny_model_path, served_row)
    assert _index_lines(lines) == ["index: reused (inputs unchanged)"]


# -- held-out questions from a sample of the held-out chunks (issue #29) ------------------------


def test_held_out_questions_come_from_a_sample_and_every_held_out_chunk_is_ranked(
    corpus, tiny_model_path, tmp_path, monkeypatch
):
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset
    from llama_index_finetune_embed.pipeline import RunConfig, dry_run

    out = tmp_path / "run"
    _cheap_run(monkeypatch, corpus, out, tiny_model_path, "base (as LlamaIndex loads it)",
               max_val_chunks=2)  # fmt: skip
    val = EmbeddingQAFinetuneDataset.from_json(out / "val_dataset.json")
    held_out = set(json.loads((out / "split.json").read_text())["val"])
    asked = {d for ids in val.relevant_docs.values() for d in ids}
    assert len(held_out) > 2 and set(val.corpus) == held_out
    assert 1 <= len(asked) <= 2 and asked <= held_out
    config = RunConfig(out=str(out), docs=[str(corpus)], llm="none", chunk_size=128,
                       chunk_overlap=8, val_ratio=0.3, max_val_chunks=2)  # fmt: skip
    assert any(f"for 2 of the {len(held_out)} held-out chunks" in line for line in dry_run(config))


def _chunk_nodes(n):
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    return [
        TextNode(id_=f"c{i}", text=f"chunk {i} – ünïcode, \"quoted\",\nnew line",
                 metadata={"page": i}, excluded_embed_metadata_keys=["page"],
                 relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"d{i % 2}")})
        for i in range(n)
    ]  # fmt: skip


def test_chunk_file_reads_chunks_from_the_file_as_they_are_used(tmp_path):
    from llama_index_finetune_embed.pipeline.stages.chunks import ChunkFile

    nodes = _chunk_nodes(5)
    chunks = ChunkFile.write(tmp_path / "chunks.json", nodes)
    # still one JSON list (json.load reads it whole), one chunk a line
    data = json.loads((tmp_path / "chunks.json").read_text(encoding="utf-8"))
    assert data == [n.to_dict() for n in nodes]
    assert len((tmp_path / "chunks.json").read_text(encoding="utf-8").splitlines()) == 5 + 2
    assert [n.to_dict() for n in chunks] == data
    assert chunks[3].to_dict() == data[3] and chunks[-1].node_id == "c4"
    assert [n.node_id for n in chunks[1:3]] == ["c1", "c2"]
    side = chunks.select(["c4", "c0", "c2", "absent"])  # file order, not the ids' order
    assert [n.node_id for n in side] == ["c0", "c2", "c4"] and len(side) == 3
    assert [n.node_id for n in side.select(["c2"])] == ["c2"]
    train, val = chunks.views(["c1", "c3", "c4"], ["c2", "c0"])  # the split's sides, one read
    assert [n.node_id for n in train] == ["c1", "c3", "c4"]
    assert [n.node_id for n in val] == ["c0", "c2"]
    assert not list(ChunkFile.write(tmp_path / "none.json", []))


def test_chunk_file_reads_the_older_one_line_layout(tmp_path):
    from llama_index_finetune_embed.pipeline.stages.chunks import ChunkFile

    nodes = _chunk_nodes(3)
    path = tmp_path / "chunks.json"
    path.write_text(json.dumps([n.to_dict() for n in nodes]) + "\n", encoding="utf-8")
    chunks = ChunkFile(path)
    assert [n.to_dict() for n in chunks] == [n.to_dict() for n in nodes]
    assert [n.node_id for n in chunks.select({"c2"})] == ["c2"]


def test_a_chunk_file_write_that_fails_leaves_the_old_file(tmp_path):
    from llama_index_finetune_embed.pipeline.stages.chunks import ChunkFile

    ChunkFile.write(tmp_path / "chunks.json", _chunk_nodes(2))

    def broken():
        yield from _chunk_nodes(1)
        raise RuntimeError("parser died")

    with pytest.raises(RuntimeError):
        ChunkFile.write(tmp_path / "chunks.json", broken())
    assert [n.node_id for n in ChunkFile(tmp_path / "chunks.json")] == ["c0", "c1"]
    assert [p.name for p in tmp_path.iterdir()] == ["chunks.json"]


# -- one embedding per (model, text) per run (issue #35) ----------------------------------------


def test_evaluate_and_index_embed_no_text_twice_and_a_redo_embeds_nothing(
    corpus, tiny_model_path, tmp_path, monkeypatch
):
    """The real evaluate and index stages (finetune: the base's weights nudged), every text
    embedded counted by (model, side, text) at HuggingFaceEmbedding's one embedding call."""
    import dataclasses
    import shutil
    from collections import Counter

    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from safetensors.torch import load_file, save_file

    from llama_index_finetune_embed.pipeline import RunConfig, run, run_pipeline
    from llama_index_finetune_embed.vectors import model_key

    def finetune(job):
        shutil.copytree(tiny_model_path, job.model_dir, dirs_exist_ok=True)
        weights = load_file(job.model_dir / "model.safetensors")
        save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()},
                  job.model_dir / "model.safetensors")  # fmt: skip
        return {}

    table = tuple(dataclasses.replace(s, make=finetune) if s.name == "finetune" else s
                  for s in run.STAGE_TABLE)  # fmt: skip
    monkeypatch.setattr(run, "STAGE_TABLE", table)
    monkeypatch.setenv("LLAMA_INDEX_FINETUNE_EMBED_CACHE", str(tmp_path / "shared"))
    seen: Counter = Counter()
    real = HuggingFaceEmbedding._embed

    def counted(self, inputs, prompt_name=None):
        key = model_key(self)
        seen.update((key, prompt_name, text) for text in inputs)
        return real(self, inputs, prompt_name)

    monkeypatch.setattr(HuggingFaceEmbedding, "_embed", counted)
    out = tmp_path / "run"
    config = RunConfig(out=str(out), docs=[str(corpus)], llm="none",
                       base_model=str(tiny_model_path), chunk_size=128, chunk_overlap=8,
                       val_ratio=0.3)  # fmt: skip
    run_pipeline(config, announce=lambda line: None)
    twice = {k: n for k, n in seen.items() if n > 1}
    assert seen and not twice
    stages = json.loads((out / "stages.json").read_text())["stages"]
    held_out = stages["evaluate"]["vectors"]["held out"]
    assert held_out["vectors reused"] > 0  # plain and windows forms share their short chunks
    assert stages["index"]["embedded"]["vectors reused"] > 0  # the held-out chunks, from evaluate
    # what the records count is what was embedded (chunks and questions; not the persisted
    # index's one probe query that records its dimension)
    probes = sum(1 for (_, side, text) in seen if (side, text) == ("query", "dimension"))
    assert len(seen) - probes == sum(c["texts embedded"] for c in (
        held_out, stages["evaluate"]["vectors"]["canary"], stages["index"]["embedded"]))

    seen.clear()
    run_pipeline(config, restart="evaluate", announce=lambda line: None)
    # evaluate and index redone: every vector read back (the probe query is the index's own)
    assert sum(seen.values()) == 1 and {k[1:] for k in seen} == {("query", "dimension")}
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert stages["index"]["embedded"]["texts embedded"] == 0
