"""Issue #14's cases for the main job: reruns reuse exactly what is unchanged, one run per
directory, one-line errors before the costly work, corrupt state named, binary files skipped,
a training interrupted mid-way resumes from its checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _corpus import write_docs
from _fake_openai import FakeOpenAIServer

from llama_index_finetune_embed.cli import main
from llama_index_finetune_embed.pipeline import STAGES
from llama_index_finetune_embed.pipeline.state import RunState, describe_change, run_lock


def _args(docs: Path | str, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "run", str(docs), "--out", str(out), "--llm", "openai:gpt-4o-mini",
        "--base-model", str(model), "--chunk-size", "128", "--chunk-overlap", "8",
        "--epochs", "1", "--batch-size", "4", "--val-ratio", "0.3", *extra,
    ]  # fmt: skip


def _plan(printed: str) -> dict[str, str]:
    """stage -> what the rerun said it did with it."""
    out = {}
    for line in printed.splitlines():
        stage, sep, what = line.partition(": ")
        if sep and stage in STAGES and what.split(" ")[0] in ("reused", "redo", "run"):
            out[stage] = what
    return out


def _requests(server: FakeOpenAIServer) -> int:
    return sum(server.snapshot()["requests"].values())


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("finetune-embed: error: "), err
    assert "\n" not in err and "Traceback" not in err
    return err


# -- reruns: each changed input redoes its stage and the later ones, nothing else -------------


@pytest.mark.slow
def test_rerun_reuses_exactly_the_unchanged_stages(
    corpus, server, tiny_model_path, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert main(_args(corpus, out, tiny_model_path)) == 0
    capsys.readouterr()
    asked = _requests(server)

    # the same docs given as a relative path are the same docs
    monkeypatch.chdir(corpus.parent)
    assert main(_args(Path("docs"), out, tiny_model_path)) == 0
    assert set(_plan(capsys.readouterr().out).values()) == {"reused (inputs unchanged)"}

    assert main(_args(corpus, out, tiny_model_path, "--top-k", "3")) == 0
    plan = _plan(capsys.readouterr().out)
    assert plan["finetune"] == "reused (inputs unchanged)"
    assert plan["evaluate"] == "redo (top_k 5 -> 3)"
    assert json.loads((out / "stages.json").read_text())["stages"]["evaluate"]["inputs"][
        "top_k"
    ] == 3

    assert main(_args(corpus, out, tiny_model_path, "--top-k", "3", "--epochs", "2")) == 0
    plan = _plan(capsys.readouterr().out)
    assert plan["generate"] == "reused (inputs unchanged)"
    assert plan["finetune"] == "redo (epochs 1 -> 2)"
    assert plan["evaluate"] == "redo (after finetune)"
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["recipe"]["epochs"] == 2  # the model on disk is the one the report names
    assert _requests(server) == asked  # no question asked twice

    # an edited file redoes the chunks; questions are asked again only for what changed
    body = " ".join(f"Bikes are now electric and parked in docks (change {i})." for i in range(6))
    (corpus / "bikes.md").write_text(f"# Bikes\n\n{body}\n")
    (corpus / "safety.md").unlink()
    assert main(_args(corpus, out, tiny_model_path, "--top-k", "3", "--epochs", "2")) == 0
    plan = _plan(capsys.readouterr().out)
    assert plan["chunks"] == "redo (documents changed: 1 edited, 1 removed)"
    chunks = json.loads((out / "chunks.json").read_text())
    assert not any("Safety" in c["text"] for c in chunks)  # deleted file's text is gone
    assert any("electric" in c["text"] for c in chunks)
    assert 0 < _requests(server) - asked <= 2  # only the edited chunk (train or val side)


def test_describe_change_says_what_differs():
    old = {"documents": {"/a": [1, 2], "/b": [3, 4]}, "epochs": 1}
    new = {"documents": {"/a": [1, 2], "/b": [3, 5], "/c": [1, 1]}, "epochs": 2}
    assert describe_change(old, new) == "documents changed: 1 edited, 1 added; epochs 1 -> 2"


# -- one run per directory ----------------------------------------------------------------------


def test_second_run_on_a_locked_directory_is_one_line(corpus, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(out):
        assert main(_args(corpus, out, tiny_model_path, "--llm", "none")) == 1
    err = _one_line_error(capsys)
    assert f"pid {os.getpid()}" in err and "another --out" in err
    assert not (out / "chunks.json").exists()


def test_stale_lock_file_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid 999999, started long ago\n")  # no process holds it
    (out / ".stages.json.x1y2.part").write_text('{"half": ')  # kill -9 mid-write
    with run_lock(out):
        assert f"pid {os.getpid()}" in (out / ".lock").read_text()
        assert not list(out.glob(".*.part"))


# -- corrupt state: the file is named, with the way out -----------------------------------------


@pytest.mark.parametrize("content", ["{not json", "", "[]", '{"stages": []}'])
def test_corrupt_state_names_the_file_and_the_way_out(tmp_path, content):
    (tmp_path / "stages.json").write_text(content)
    with pytest.raises(ValueError, match=r"stages.json .*--restart chunks"):
        RunState(tmp_path, {s: {} for s in STAGES})
    state = RunState(tmp_path, {s: {} for s in STAGES}, restart="chunks")  # the way out works
    assert state.plan_lines()[0] == "chunks: run (--restart chunks)"


def test_restart_redoes_a_stage_and_the_later_ones(tmp_path):
    inputs = {s: {"x": 1} for s in STAGES}
    first = RunState(tmp_path, inputs)
    for stage in STAGES:
        first.mark(stage)
    again = RunState(tmp_path, inputs, restart="finetune")
    assert again.plan_lines() == [
        "chunks: reused (inputs unchanged)", "split: reused (inputs unchanged)",
        "generate: reused (inputs unchanged)", "finetune: redo (--restart finetune)",
        "evaluate: redo (after finetune)", "index: redo (after finetune)",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="--restart must be one of"):
        RunState(tmp_path, inputs, restart="train")


def test_missing_output_redoes_its_stage_and_later_ones(tmp_path):
    inputs = {s: {"x": 1} for s in STAGES}
    first = RunState(tmp_path, inputs)
    for stage in STAGES:
        first.mark(stage)
    again = RunState(tmp_path, inputs)
    assert again.finished("split")
    assert not again.finished("finetune", tmp_path / "model" / "model.safetensors")
    assert "evaluate" not in again.done
    assert again.reasons["finetune"] == "redo (model.safetensors is missing)"


# -- output problems: one line, before the costly stage -----------------------------------------


def test_generate_into_a_directory_fails_before_asking(corpus, server, tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    assert main(["generate", str(corpus), "--out", str(target), "--llm", "openai:x"]) == 1
    assert "is a directory" in _one_line_error(capsys)
    assert _requests(server) == 0


def test_evaluate_report_into_an_impossible_place_fails_before_embedding(
    tmp_path, tiny_model_path, capsys
):
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    ds = EmbeddingQAFinetuneDataset(
        queries={"q": "who rides?"}, corpus={"c": "riders ride"}, relevant_docs={"q": ["c"]}
    )
    ds.save_json(tmp_path / "val.json")
    (tmp_path / "file").write_text("x")
    argv = ["evaluate", str(tmp_path / "val.json"), str(tiny_model_path)]
    assert main([*argv, "--report", str(tmp_path / "file" / "r.md")]) == 1
    assert "not a directory" in _one_line_error(capsys)
    assert main([*argv, "--max-seq-length", "100000"]) == 1
    assert "more than" in _one_line_error(capsys)


def test_finetune_into_an_existing_file_is_one_line(tmp_path, tiny_model_path, capsys):
    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset

    ds = EmbeddingQAFinetuneDataset(
        queries={"q": "who rides?"}, corpus={"c": "riders ride"}, relevant_docs={"q": ["c"]}
    )
    ds.save_json(tmp_path / "train.json")
    (tmp_path / "model").write_text("not a folder")
    argv = ["finetune", str(tmp_path / "train.json"), "--out", str(tmp_path / "model")]
    assert main([*argv, "--base-model", str(tiny_model_path)]) == 1
    assert "not a directory" in _one_line_error(capsys)


def test_run_with_an_impossible_length_fails_before_chunking(
    corpus, tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(_args(corpus, out, tiny_model_path, "--llm", "none",
                      "--max-seq-length", "100000")) == 1  # fmt: skip
    assert "more than" in _one_line_error(capsys)
    assert not (out / "chunks.json").exists()


# -- binary files are skipped, counted in the report ----------------------------------------------


def test_binary_files_are_skipped_not_chunked(tmp_path, caplog):
    from llama_index_finetune_embed.documents import find_documents, load_documents

    docs = write_docs(tmp_path / "docs")
    (docs / "noise.md").write_bytes(os.urandom(4096))
    (docs / "fake.pdf").write_bytes(b"not a pdf at all")
    (docs / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me and na\xefve text.\n".encode("latin-1"))
    files, skipped = find_documents([docs])
    assert sorted(p.name for p in skipped) == ["fake.pdf", "noise.md"]
    assert "latin1.txt" in {p.name for p in files}
    loaded = {Path(d.metadata["file_path"]).name: d.text for d in load_documents([docs])}
    assert set(loaded) == {"latin1.txt", *(f"{t}.md" for t in ("riders", "drivers", "insurance",
                                                              "bikes", "pricing", "safety"))}
    assert "skipping" in caplog.text and "noise.md" in caplog.text
    with pytest.raises(FileNotFoundError, match="only 1 binary file"):
        find_documents([docs / "noise.md"])


def test_run_report_counts_skipped_binary_files(tmp_path, tiny_model_path, capsys):
    docs = write_docs(tmp_path / "docs")
    (docs / "noise.md").write_bytes(os.urandom(4096))
    out = tmp_path / "run"
    argv = _args(docs, out, tiny_model_path, "--llm", "none")
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    assert "(1 binary file(s) skipped, see the log)" in report
    chunks = json.loads((out / "chunks.json").read_text())
    assert all("\ufffd" not in c["text"] for c in chunks)


# -- a training interrupted mid-way resumes from its last checkpoint ----------------------------


@pytest.mark.slow
def test_training_killed_midway_resumes_from_its_checkpoint(
    corpus, tiny_model_path, tmp_path, capsys, monkeypatch
):
    from safetensors.numpy import load_file
    from transformers import TrainerCallback

    from llama_index_finetune_embed.finetune import trainer as build

    argv = ["--llm", "none", "--epochs", "6", "--batch-size", "2", "--no-guard"]
    whole = tmp_path / "whole"
    assert main(_args(corpus, whole, tiny_model_path, *argv)) == 0

    class KillAt(TrainerCallback):  # Ctrl-C at step 7, after the checkpoint at step 5
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 7:
                raise KeyboardInterrupt

    real = build.assemble_trainer

    def with_kill(*a, **kw):
        trainer = real(*a, **kw)
        trainer.add_callback(KillAt())
        return trainer

    cut = tmp_path / "cut"
    monkeypatch.setattr(build, "assemble_trainer", with_kill)
    assert main(_args(corpus, cut, tiny_model_path, *argv)) == 130
    assert (cut / "model" / "checkpoints" / "checkpoint-5").is_dir()
    assert not (cut / "model" / "model.safetensors").exists()
    monkeypatch.setattr(build, "assemble_trainer", real)
    capsys.readouterr()
    assert main(_args(corpus, cut, tiny_model_path, *argv)) == 0
    printed = capsys.readouterr()
    assert "finetune: run (not done yet)" in printed.out
    assert "resuming from" in printed.err and "checkpoint-5" in printed.err
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(cut / "model" / "model.safetensors"))
    assert set(a) == set(b)
    import numpy as np

    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)  # as if never interrupted
    assert not (cut / "model" / "checkpoints").exists()  # cleaned up after success


def test_disk_full_while_writing_the_report_is_one_line_naming_the_file(
    tmp_path, tiny_model_path, capsys, monkeypatch
):
    import errno

    from llama_index_finetune_embed import EmbeddingQAFinetuneDataset, _io

    ds = EmbeddingQAFinetuneDataset(
        queries={"q": "who rides?"}, corpus={"c": "riders ride"}, relevant_docs={"q": ["c"]}
    )
    ds.save_json(tmp_path / "val.json")
    target = tmp_path / "r.md"

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(_io, "atomic_write_text", full)
    argv = ["evaluate", str(tmp_path / "val.json"), str(tiny_model_path), "--report", str(target)]
    assert main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last == f"finetune-embed: error: {target}: No space left on device"


def test_every_setting_that_changes_results_feeds_a_stage_fingerprint(tmp_path):
    from types import SimpleNamespace

    from llama_index_finetune_embed.pipeline import RunConfig, stage_inputs

    write_docs(tmp_path / "docs")
    base = RunConfig(out=str(tmp_path / "o"), docs=[str(tmp_path / "docs")])
    choices = SimpleNamespace(llm="local", base_model="/m")
    before = stage_inputs(base, choices)
    changed = {
        "chunk_size": 256, "chunk_overlap": 8, "max_chunks": 50, "questions_per_chunk": 3,
        "val_ratio": 0.3, "epochs": 3, "batch_size": 8, "max_seq_length": 128,
        "base_weight": 0.0, "guard": False, "top_k": 10, "offline_train": "mix", "seed": 1,
        "max_train_chunks": 20, "max_val_chunks": 5, "current_model": "openai:x",
        "to_store": "qdrant:/tmp/q?collection=new",
    }  # fmt: skip
    not_results = {"out", "docs", "llm", "base_model", "num_workers"}  # docs/llm/model: below
    not_results |= {"max_rpm", "max_tpm", "max_calls", "budget_tokens"}  # pace or stop; a budget
    # stop raises before the generate stage is recorded, so nothing partial is ever reused
    not_results |= {"embed_on"}  # where vectors are computed, not which (tests/test_serving_ray.py)
    not_results |= {"from_index", "from_store"}  # the source, like docs: below
    assert set(changed) | not_results == set(RunConfig.model_fields)
    for name, value in changed.items():
        after = stage_inputs(base.model_copy(update={name: value}), choices)
        assert after != before, f"changing {name} would reuse stale stages"
    other = SimpleNamespace(llm="openai:gpt-4o-mini", base_model="/other")
    assert stage_inputs(base, other)["generate"] != before["generate"]
    capped = base.model_copy(update={"max_train_chunks": 20})  # the offline cap: API runs ignore it
    assert stage_inputs(capped, other)["generate"] == stage_inputs(base, other)["generate"]
    assert stage_inputs(base, other)["finetune"] != before["finetune"]
    one = RunConfig(out=str(tmp_path / "o"), from_store="qdrant:/tmp/q?collection=one")
    two = one.model_copy(update={"from_store": "qdrant:/tmp/q?collection=two"})
    assert stage_inputs(one, choices)["chunks"] != stage_inputs(two, choices)["chunks"]
