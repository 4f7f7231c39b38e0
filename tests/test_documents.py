from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llama_index_finetune_embed import chunk_documents, load_documents, stdlib_documents


def _make_pdf(
    path: Path, lines: list[str], password: str | None = None, *, algorithm: str | None = None
) -> Path:
    """A real text PDF drawn by matplotlib (optionally encrypted with pypdf: ``password`` is the
    user password, ``""`` opens without one; ``algorithm`` e.g. ``"AES-256"``, default RC4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8.5, 11))
    for i, line in enumerate(lines):
        fig.text(0.05, 0.95 - i * 0.03, line, fontsize=9)
    fig.savefig(path, format="pdf")
    plt.close(fig)
    if password is not None:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(path))
        writer.encrypt(user_password=password, owner_password="owner", algorithm=algorithm)
        writer.write(path)
    return path


LINES = [
    "Lyft connects riders and drivers across the United States and Canada.",
    "Revenue grew as ride volume recovered in the second half of the year.",
    "Drivers are independent contractors, a classification under legal challenge.",
]


def test_pdf_and_markdown_are_read(tmp_path):
    _make_pdf(tmp_path / "report.pdf", LINES)
    (tmp_path / "notes.md").write_text("# Notes\n\n" + " ".join(LINES))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # not a document type: ignored
    docs = load_documents([tmp_path])
    names = sorted(d.metadata["file_name"] for d in docs)
    assert names == ["notes.md", "report.pdf"]
    pdf = next(d for d in docs if d.metadata["file_name"] == "report.pdf")
    assert "riders and drivers" in pdf.text and pdf.metadata["page_label"] == "1"


def test_encrypted_and_broken_pdfs_are_skipped_with_a_warning(tmp_path, caplog):
    _make_pdf(tmp_path / "good.pdf", LINES)
    _make_pdf(tmp_path / "locked.pdf", LINES, password="secret")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    with caplog.at_level(logging.WARNING):
        docs = load_documents([tmp_path])
    assert {d.metadata["file_name"] for d in docs} == {"good.pdf"}
    assert "locked.pdf: encrypted PDF that needs a password" in caplog.text
    assert "broken.pdf: unreadable PDF" in caplog.text


@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_aes_encrypted_pdf_with_an_empty_password_is_read(tmp_path, caplog, algorithm):
    # SEC filings are often AES-encrypted with an empty user password (issue #28)
    _make_pdf(tmp_path / "10-K.pdf", LINES, password="", algorithm=algorithm)
    with caplog.at_level(logging.WARNING):
        (doc,) = load_documents([tmp_path])
    assert "riders and drivers" in doc.text and doc.metadata["page_label"] == "1"
    assert "skipping" not in caplog.text


def test_aes_pdf_needing_a_password_is_one_clear_warning(tmp_path, caplog):
    _make_pdf(tmp_path / "good.pdf", LINES)
    _make_pdf(tmp_path / "locked.pdf", LINES, password="secret", algorithm="AES-256")
    with caplog.at_level(logging.WARNING):
        docs = load_documents([tmp_path])
    assert {d.metadata["file_name"] for d in docs} == {"good.pdf"}
    (warning,) = [r.getMessage() for r in caplog.records if "locked.pdf" in r.getMessage()]
    assert "encrypted PDF that needs a password" in warning and "qpdf" in warning


def test_pdf_extra_brings_cryptography():
    # pypdf decrypts AES only with cryptography (or pycryptodome); without it the PDFs above are
    # skipped, as 1 of 74 10-K/10-Q filings in a public set were
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("cryptography") for req in extras["pdf"])


def test_without_cryptography_an_aes_pdf_is_skipped_with_the_install_hint(tmp_path):
    import subprocess
    import sys

    pdf = _make_pdf(tmp_path / "10-K.pdf", LINES, password="", algorithm="AES-128")
    code = (
        "import logging, sys\n"
        "sys.modules['cryptography'] = None  # as if not installed\n"
        "sys.modules['Crypto'] = None\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from llama_index_finetune_embed.documents import PypdfReader\n"
        f"assert PypdfReader().load_data({str(pdf)!r}) == []\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "10-K.pdf: encrypted PDF; pypdf needs `cryptography`" in out.stderr
    assert "pip install 'llama-index-finetune-embed[pdf]'" in out.stderr


def test_nothing_readable_is_one_clear_error(tmp_path):
    _make_pdf(tmp_path / "locked.pdf", LINES, password="secret")
    with pytest.raises(FileNotFoundError, match="no readable text in 1 file"):
        load_documents([tmp_path / "locked.pdf"])


def test_no_documents_and_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no documents found"):
        load_documents([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_documents([tmp_path / "missing"])


def test_stdlib_corpus_chunks_with_stable_ids():
    docs = stdlib_documents()
    assert sum(len(d.text) for d in docs) > 300_000
    first = chunk_documents(docs[:10], chunk_size=256, chunk_overlap=32)
    again = chunk_documents(stdlib_documents()[:10], chunk_size=256, chunk_overlap=32)
    assert [n.node_id for n in first] == [n.node_id for n in again]
    assert len({n.node_id for n in first}) == len(first)
    assert all(len(n.get_content()) >= 100 for n in first)


def test_chunk_overlap_must_be_smaller():
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_documents(stdlib_documents()[:1], chunk_size=64, chunk_overlap=64)


def test_file_path_and_page_label_are_kept_but_not_embedded(tmp_path):
    from llama_index.core.schema import MetadataMode

    _make_pdf(tmp_path / "report.pdf", LINES)
    node = chunk_documents(load_documents([tmp_path]), chunk_size=256, chunk_overlap=16)[0]
    assert node.metadata["page_label"] == "1" and node.metadata["file_path"].endswith("report.pdf")
    embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "file_path" not in embedded and "page_label" not in embedded
    assert "page_label: 1" in node.get_content(metadata_mode=MetadataMode.LLM)


# -- loading at corpus scale: processes and a parse cache (issue #29) ----------------------------


def _corpus_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        _make_pdf(folder / f"filing{i}.pdf", [f"Filing {i}: {line}" for line in LINES])
    (folder / "notes.md").write_text("# Notes\n\n" + " ".join(LINES))
    return folder


def _view(docs):
    return [(d.metadata["file_name"], d.metadata.get("page_label"), d.text) for d in docs]


def test_files_parsed_in_processes_give_what_one_process_gives(tmp_path):
    folder = _corpus_files(tmp_path / "docs")
    one = load_documents([folder], num_workers=1)
    two = load_documents([folder], num_workers=2)
    assert _view(two) == _view(one) and len(one) == 4
    assert [d.excluded_embed_metadata_keys for d in two] == [
        d.excluded_embed_metadata_keys for d in one
    ]


def test_a_parse_cache_is_read_back_and_a_changed_file_parsed_again(tmp_path, monkeypatch):
    import os

    from llama_index_finetune_embed import documents

    folder = _corpus_files(tmp_path / "docs")
    first = load_documents([folder], cache_dir=tmp_path / "parsed", num_workers=1)
    assert len(list((tmp_path / "parsed").glob("*.json"))) == 4
    parsed: list[str] = []
    real = documents._parse_one
    monkeypatch.setattr(documents, "_parse_one", lambda f: parsed.append(Path(f).name) or real(f))
    again = load_documents([folder], cache_dir=tmp_path / "parsed", num_workers=1)
    assert parsed == [] and _view(again) == _view(first)
    assert [d.id_ for d in again] == [d.id_ for d in first]  # the same documents
    note = folder / "notes.md"
    note.write_text("# Notes\n\nRewritten notes about scooters.")
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 10**9))
    changed = load_documents([folder], cache_dir=tmp_path / "parsed", num_workers=1)
    assert parsed == ["notes.md"]
    assert "scooters" in next(d.text for d in changed if d.metadata["file_name"] == "notes.md")
