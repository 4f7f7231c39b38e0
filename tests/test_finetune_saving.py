"""save_or_rescue: a failed save writes the model elsewhere and says where, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_index_finetune_embed.finetune.saving import ModelSaveError, save_or_rescue


def test_safetensors_disk_full_error_is_rescued_and_named_in_one_line(tmp_path):
    from safetensors import SafetensorError

    out = tmp_path / "model"
    written: list[Path] = []

    def write(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if folder == out:  # what safetensors raises on a full disk (no OSError)
            (folder / "modules.json").write_text("{}")
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                'message: "No space left on device" })\nmore'
            )
        (folder / "modules.json").write_text("{}")
        written.append(folder)

    with pytest.raises(ModelSaveError) as info:
        save_or_rescue(write, out)
    message = str(info.value)
    assert message.count("\n") == 0 and "(No space left on device)" in message
    assert info.value.rescue_path == written[0] and written[0].name.startswith("model.rescue-")
    assert not (out / "modules.json").exists()  # the failed save does not pass for a model


def test_a_successful_save_is_left_alone(tmp_path):
    save_or_rescue(lambda folder: (folder / "modules.json").write_text("{}"), tmp_path)
    assert (tmp_path / "modules.json").is_file()
    assert [p.name for p in tmp_path.parent.iterdir() if ".rescue-" in p.name] == []
