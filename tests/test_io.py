"""_io: atomic writes leave the old file or the new one, never a torn one or a stray temp file."""

from __future__ import annotations

import pytest

from llama_index_finetune_embed._io import atomic_open, atomic_write_json, read_jsonl


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_open(target, "wb") as fh:
        fh.write(b"first")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as fh:
        fh.write(b"half of the second")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # no temp file left


def test_two_writers_never_share_a_temp_name(tmp_path):
    target = tmp_path / "report.png"
    with atomic_open(target, "wb") as a, atomic_open(target, "wb") as b:
        assert a.name != b.name
        a.write(b"a")
        b.write(b"b")
    assert target.read_bytes() == b"a"  # the last to finish wins, whole


def test_atomic_write_json_round_trip_and_bad_mode(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"k": [1, 2]})
    assert (tmp_path / "x.json").read_text(encoding="utf-8").startswith("{")
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "y", "a"):
            pass
    (tmp_path / "z.jsonl").write_text('{"a": 1}\n{"b": 2', encoding="utf-8")
    assert list(read_jsonl(tmp_path / "z.jsonl")) == [{"a": 1}]  # torn tail skipped


def test_atomic_files_get_the_same_mode_as_plain_ones(tmp_path):
    (tmp_path / "plain.txt").write_text("x", encoding="utf-8")
    atomic_write_json(tmp_path / "atomic.json", {})
    assert (tmp_path / "atomic.json").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
