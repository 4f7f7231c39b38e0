"""Saving a trained model without ever losing it: write, and on failure write it elsewhere.

A full disk or a folder that became read-only during training must not cost the training: the
weights are still in memory when a save fails, so they are written once more to a rescue folder
(beside the output folder, else in the system temp folder, often another filesystem) and one
error says what failed and where the model is.

No torch here: the engine hands over the function that writes the model to a folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# what a half-written save leaves that would pass for a whole model (modules.json marks one)
_PARTIAL_FILES = ("modules.json", "model.safetensors", "pytorch_model.bin", "metrics.json")


class ModelSaveError(OSError):
    """The finetuned model could not be saved where asked; ``rescue_path`` holds it (or ``None``).

    An ``OSError`` whose message names both folders, so the CLI prints it as one line.
    """

    def __init__(self, message: str, rescue_path: Path | None) -> None:
        super().__init__(message)
        self.rescue_path = rescue_path

    def __str__(self) -> str:
        return str(self.args[0])


def save_or_rescue(write: Callable[[Path], None], out: Path) -> None:
    """``write(out)``; if it fails, ``write`` to a rescue folder and raise :class:`ModelSaveError`.

    The rescue folder is ``<out>.rescue-<time>`` beside ``out``, else a new folder in the system
    temp folder. Files of the failed save that would pass for a whole model are removed from
    ``out`` (they are half-written; removing them also frees space for the rescue).

    Example:
        >>> save_or_rescue(lambda folder: model.save_pretrained(str(folder)), Path("exp"))
        ... # doctest: +SKIP
    """
    try:
        write(out)
        return
    except Exception as exc:  # a SafetensorError (disk full) is no OSError: catch them all
        failure = _reason(exc)
        cause: BaseException = exc
    logger.warning("saving the finetuned model to %s failed (%s); saving it elsewhere", out,
                   failure)
    _remove_partial(out)
    tried = []
    for rescue in _rescue_folders(out):
        try:
            write(rescue)
        except Exception as again:
            tried.append(f"{rescue} ({_reason(again)})")
            shutil.rmtree(rescue, ignore_errors=True)
            continue
        raise ModelSaveError(
            f"could not save the finetuned model to {out} ({failure}); it was saved to "
            f"{rescue} instead: fix {out} and move it there, or load it from where it is",
            rescue,
        ) from cause
    raise ModelSaveError(
        f"could not save the finetuned model to {out} ({failure}), nor to "
        f"{'; nor to '.join(tried) or 'a rescue folder'}; free some space or pass a writable "
        "model_output_path (through the Python API, the trained model is still in "
        "engine.model: engine.model.save_pretrained(path) saves it)",
        None,
    ) from cause


def _rescue_folders(out: Path) -> list[Path]:
    """Folders to try, in order: beside ``out`` (easy to find), then the system temp folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    beside = out.with_name(f"{out.name}.rescue-{stamp}")
    candidates = [beside] if not beside.exists() else []
    try:
        candidates.append(Path(tempfile.mkdtemp(prefix=f"{out.name}.rescue-{stamp}-")))
    except OSError:
        pass
    return candidates


def _remove_partial(out: Path) -> None:
    for name in _PARTIAL_FILES:
        try:
            (out / name).unlink(missing_ok=True)
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    """One line for a failed write: the OS's words where there are some."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    if text and "No space left on device" in text[0]:  # safetensors' Rust IoError
        return "No space left on device"
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["ModelSaveError", "save_or_rescue"]
