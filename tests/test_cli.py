"""The CLI end to end on a tiny corpus: tiny model, real OpenAI client against a fake server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llama_index_finetune_embed.cli import main


def _run_args(corpus: Path, out: Path, model: Path) -> list[str]:
    return [
        "run",
        str(corpus),
        "--out",
        str(out),
        "--llm",
        "openai:gpt-4o-mini",
        "--base-model",
        str(model),
        "--chunk-size",
        "128",
        "--chunk-overlap",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--val-ratio",
        "0.3",
    ]


@pytest.mark.slow
def test_run_end_to_end_then_resume_skips_every_stage(
    corpus, server, tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(_run_args(corpus, out, tiny_model_path)) == 0
    printed = capsys.readouterr().out
    assert "question source: openai:gpt-4o-mini (chosen with --llm)" in printed
    assert "| base" in printed and "| finetuned" in printed
    for name in ("chunks.json", "split.json", "train_dataset.json", "val_dataset.json"):
        assert (out / name).is_file(), name
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "report.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "held-out questions" in report and "finetuned" in report
    assert "| base (as LlamaIndex loads it) |" in report  # the status quo is the first row
    rows = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]
    assert rows[1:5] == ["base (as LlamaIndex loads it)", "base (as LlamaIndex loads it) + "
                         "windows", "finetuned", "finetuned + windows"]  # fmt: skip
    assert f'load_window_index("{out / "index"}")' in report
    assert f"index:  {out / 'index'}" in printed
    from llama_index_finetune_embed import load_window_index

    # the index serves the row the report chose, said first in report.md and in report.json
    served = json.loads((out / "report.json").read_text())["served"]
    assert report.startswith(f"# finetune-embed report\n\n**Served: {served['row']}**")
    assert served["row"] in rows and served["rows"][served["row"]]["loses_canary"] is False
    assert f"serving: {served['row']}" in printed
    index = load_window_index(out / "index")  # every chunk, in the chosen form
    chunks = json.loads((out / "chunks.json").read_text())
    model = out / "model" if served["model"] == "finetuned" else tiny_model_path
    assert index.embed_model.model_name == str(Path(model).resolve())
    assert index.long_chunks == served["long_chunks"]
    assert "- where held-out questions point:" in report
    hits = index.as_retriever(similarity_top_k=3).retrieve("a question about the documents")
    assert len(hits) == 3 and {h.node.node_id for h in hits} <= {c["id_"] for c in chunks}
    assert "- guard: the finetuned model" in report and "canary (171 questions)" in report
    assert "Resolution: with" in report
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert set(stages) == {"chunks", "split", "generate", "finetune", "evaluate", "index"}
    assert stages["finetune"]["inputs"]["base_model"] == str(tiny_model_path)

    split = json.loads((out / "split.json").read_text())
    train = json.loads((out / "train_dataset.json").read_text())
    val = json.loads((out / "val_dataset.json").read_text())
    assert set(train["corpus"]) == set(split["train"]) and set(val["corpus"]) == set(split["val"])
    assert set(train["corpus"]).isdisjoint(val["corpus"])

    calls = server.snapshot()["requests"]
    model_bytes = (out / "model" / "model.safetensors").read_bytes()
    assert main(_run_args(corpus, out, tiny_model_path)) == 0
    assert server.snapshot()["requests"] == calls  # nothing asked again
    printed = capsys.readouterr().out
    for stage in ("chunks", "split", "generate", "finetune", "evaluate", "index"):
        assert f"{stage}: reused (inputs unchanged)" in printed
    assert (out / "model" / "model.safetensors").read_bytes() == model_bytes


@pytest.mark.slow
def test_run_serves_the_base_in_windows_when_the_report_chose_it(
    corpus, server, tiny_model_path, tmp_path, monkeypatch
):
    """Forced: the choice says the base in windows beat the finetuned model; the index obeys."""
    from llama_index_finetune_embed.pipeline import serve

    real = serve.pick_served

    def base_in_windows(held_out, canary, **kwargs):
        chosen = real(held_out, canary, **kwargs)
        row = f"{held_out.baseline} + windows"
        return {**chosen, "row": row, **serve.served_form(row, held_out.baseline)}

    monkeypatch.setattr(serve, "pick_served", base_in_windows)
    out = tmp_path / "run"
    assert main(_run_args(corpus, out, tiny_model_path)) == 0
    from llama_index_finetune_embed import load_window_index

    index = load_window_index(out / "index")
    assert index.embed_model.model_name == str(Path(tiny_model_path).resolve())
    assert index.long_chunks == "window"
    assert (out / "report.md").read_text().startswith(
        "# finetune-embed report\n\n**Served: base (as LlamaIndex loads it) + windows**"
    )
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert stages["index"]["served"] == "base (as LlamaIndex loads it) + windows"


def test_state_from_an_older_version_redoes_every_stage(
    corpus, server, tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stages.json").write_text(  # the format before inputs were recorded
        json.dumps({"config": {"docs": [str(corpus)], "chunk_size": 999}, "done": {}})
    )
    assert main(_run_args(corpus, out, tiny_model_path)) == 0
    assert json.loads((out / "stages.json").read_text())["format"] == 2


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("finetune-embed: error: ")
    assert "\n" not in err and "Traceback" not in err
    return err


def test_openai_without_key_is_one_line_error(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["run", str(corpus), "--out", str(tmp_path / "o"), "--llm", "openai:gpt-4o"]) == 1
    assert "needs OPENAI_API_KEY" in _one_line_error(capsys)


def test_no_documents_found(tmp_path, server, tiny_model_path, capsys):
    (tmp_path / "empty").mkdir()
    args = _run_args(tmp_path / "empty", tmp_path / "o", tiny_model_path)
    assert main(args) == 1
    assert "no documents found" in _one_line_error(capsys)


def test_only_an_encrypted_pdf(tmp_path, server, tiny_model_path, capsys):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("secret")
    docs = tmp_path / "docs"
    docs.mkdir()
    writer.write(docs / "locked.pdf")
    assert main(_run_args(docs, tmp_path / "o", tiny_model_path)) == 1
    captured = capsys.readouterr()
    assert "no readable text in 1 file" in captured.err
    assert "Traceback" not in captured.err


def test_base_model_not_found_offline(corpus, tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = _run_args(corpus, tmp_path / "o", Path("org/no-such-model"))
    assert main(args) == 1
    err = _one_line_error(capsys)
    assert "'org/no-such-model' could not be loaded" in err and "local:all-MiniLM-L6-v2" in err
    assert main(_run_args(corpus, tmp_path / "o", tmp_path / "missing-dir")) == 1
    assert "model directory not found" in _one_line_error(capsys)


def test_out_dir_not_writable(corpus, tmp_path, server, tiny_model_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(_run_args(corpus, blocker / "out", tiny_model_path)) == 1
    assert "is not writable" in _one_line_error(capsys)


def test_unknown_llm(corpus, tmp_path, capsys):
    assert main(["run", str(corpus), "--out", str(tmp_path / "o"), "--llm", "gpt"]) == 1
    assert "unknown --llm 'gpt'" in _one_line_error(capsys)


def test_stage_commands_generate_finetune_evaluate(
    corpus, server, tiny_model_path, tmp_path, capsys
):
    data = tmp_path / "pairs.json"
    common = ["--chunk-size", "128", "--chunk-overlap", "8"]
    assert (
        main(["generate", str(corpus), "--out", str(data), "--llm", "openai:gpt-4o-mini", *common])
        == 0
    )
    assert "queries over" in capsys.readouterr().out
    assert (tmp_path / "pairs.json.cache.jsonl").is_file()
    model = tmp_path / "ft"
    args = ["finetune", str(data), "--out", str(model), "--base-model", str(tiny_model_path)]
    assert main([*args, "--epochs", "1", "--batch-size", "4"]) == 0
    assert (model / "model.safetensors").is_file()
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["recipe"]["base_weight"] == 0.5 and "guard" in metrics  # the defaults
    assert "guard: the finetuned model" in capsys.readouterr().out
    raw = tmp_path / "ft-raw"
    raw_args = ["--out", str(raw), "--epochs", "1", "--batch-size", "4"]
    assert main([*args[:2], "--base-model", str(tiny_model_path), *raw_args,
                 "--base-weight", "0", "--no-guard"]) == 0
    metrics = json.loads((raw / "metrics.json").read_text())
    assert metrics["recipe"]["base_weight"] == 0.0 and "guard" not in metrics
    capsys.readouterr()
    report, plot = tmp_path / "r.md", tmp_path / "r.png"
    argv = ["evaluate", str(data), f"base={tiny_model_path}", f"ft={model}"]
    assert main([*argv, "--report", str(report), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "| base" in printed and "| ft" in printed
    assert report.read_text().startswith("|") or "base" in report.read_text()
    assert plot.stat().st_size > 10_000
    assert main([*argv, "--index", "both"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")]  # fmt: skip
    assert rows[1:5] == ["base", "base + windows", "ft", "ft + windows"]


def test_module_entry_point_help():
    proc = subprocess.run(
        [sys.executable, "-m", "llama_index_finetune_embed", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for command in ("run", "generate", "finetune", "evaluate"):
        assert command in proc.stdout


@pytest.mark.slow
def test_run_without_any_llm_trains_on_pseudo_queries(corpus, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = _run_args(corpus, out, tiny_model_path)
    args[args.index("--llm") + 1] = "none"
    assert main(args) == 0
    train = json.loads((out / "train_dataset.json").read_text())
    assert set(train["query_sources"].values()) == {"ict"}
    report = (out / "report.md").read_text()
    assert "held-out questions" in report and "copied from their own chunks" in report
    assert "| finetuned" in capsys.readouterr().out


def test_options_and_defaults_come_from_run_config(tmp_path, capsys):
    from llama_index_finetune_embed.cli import _build_parser
    from llama_index_finetune_embed.pipeline import RunConfig

    args = _build_parser().parse_args(["run", "--out", str(tmp_path)])
    config = RunConfig(out=str(tmp_path))
    shared = set(vars(args)) & set(RunConfig.model_fields)
    assert shared >= {"chunk_size", "llm", "base_weight", "guard", "offline_train", "top_k"}
    assert {name: getattr(args, name) for name in shared} == {
        name: getattr(config, name) for name in shared
    }
    assert not _build_parser().parse_args(["finetune", "t.json", "--out", "m", "--no-guard"]).guard
    # a range error names the flag and the rule, in one line (not pydantic's text)
    assert main(["run", "--out", str(tmp_path), "--chunk-size", "3"]) == 1
    line = _one_line_error(capsys)
    assert "--chunk-size 3" in line and "greater than 16" in line and "pydantic" not in line
