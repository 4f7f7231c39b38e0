"""The main job's ledger: what each stage was made from, and a lock on the run.

``DIR/stages.json`` records, per finished stage, the inputs it was made from: the documents
(resolved path, size and modification time of every file), every setting that feeds the stage
and the package version. A rerun reuses exactly the stages whose inputs are unchanged and redoes
the first changed one and everything after it, saying why in one line per stage.

Two more records catch what settings cannot: ``reads``, fingerprints of files that earlier stages
made and this one reads (the served model's weights, known only once those stages are done), and
``outputs``, the size and modification time of every file a stage wrote (a deleted or damaged
file of the index redoes it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from llama_index_finetune_embed._io import atomic_write_json, text_hash

_FORMAT = 2


def inputs_digest(inputs: Mapping[str, Any]) -> str:
    """A short content hash of one stage's inputs (names cache files per setting)."""
    return text_hash(json.dumps(inputs, sort_keys=True, default=str))[:12]


class RunState:
    """``DIR/stages.json``: which stages are done and from what; decides what a rerun reuses.

    Example:
        >>> state = RunState(Path("runs/demo"), stage_inputs(config, choices))  # doctest: +SKIP
        >>> state.plan_lines()  # doctest: +SKIP
        ['chunks: reused (inputs unchanged)', 'split: reused (inputs unchanged)',
         'generate: redo (questions_per_chunk 2 -> 3)', 'finetune: redo (after generate)', ...]
    """

    def __init__(
        self, out: Path, inputs: dict[str, dict[str, Any]], *, restart: str | None = None
    ) -> None:
        self.stages = tuple(inputs)  # in run order: redoing one redoes every later one
        if restart is not None and restart not in self.stages:
            names = ", ".join(self.stages)
            raise ValueError(f"--restart must be one of {names}; got {restart!r}")
        self.path = out / "stages.json"
        self.inputs = inputs
        self.reads: dict[str, dict[str, Any]] = {}
        old = {} if restart == self.stages[0] else self._read()
        self.fresh = not old
        self.done: dict[str, dict[str, Any]] = {}
        self.reasons: dict[str, str] = {}
        redo_after: str | None = None
        for stage in self.stages:
            prev = old.get(stage)
            if redo_after is not None:
                why = f"after {redo_after}"
            elif stage == restart:
                why = f"--restart {stage}"
            elif not isinstance(prev, dict) or not isinstance(prev.get("inputs"), dict):
                why = "not done yet"
            elif prev["inputs"] != inputs[stage]:
                why = describe_change(prev["inputs"], inputs[stage])
            else:
                self.done[stage] = prev
                self.reasons[stage] = "reused (inputs unchanged)"
                continue
            redo_after = redo_after or stage
            self.reasons[stage] = f"redo ({why})" if prev else f"run ({why})"

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        way_out = (
            f"delete it, or rerun with --restart {self.stages[0]} to redo every stage "
            "(question caches are kept)"
        )
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path} is unreadable ({exc}); {way_out}") from None
        if not isinstance(state, dict):
            raise ValueError(f"{self.path} is not a run state (not a JSON object); {way_out}")
        if "stages" not in state:
            return {}  # written by an older version, which recorded no inputs: redo every stage
        stages = state["stages"]
        if not isinstance(stages, dict):
            raise ValueError(
                f"{self.path} is not a run state ('stages' is not a mapping); {way_out}"
            )
        return stages

    def plan_lines(self) -> list[str]:
        """One line per stage: reused, or redone and why."""
        return [f"{stage}: {self.reasons[stage]}" for stage in self.stages]

    def read_from(self, name: str, reads: dict[str, Any]) -> bool:
        """Record what ``name`` reads of files earlier stages made (fingerprints known once they
        are done); if it was made from other ones, it and every later stage are redone.

        Returns whether that turned a reuse into a redo (``reasons[name]`` says why).
        """
        self.reads[name] = reads
        prev = self.done.get(name)
        if prev is None or prev.get("reads") == reads:
            return False
        old = prev.get("reads")
        why = describe_change(old, reads) if isinstance(old, dict) else "reads not recorded"
        self._redo_from(name, why)
        return True

    def finished(self, name: str, *outputs: Path) -> bool:
        """Whether ``name`` can be reused: done from the same inputs, its ``outputs`` still
        there and every file its record lists under ``outputs`` (:func:`file_stamps`) untouched."""
        if name not in self.done:
            return False
        missing = next((p for p in outputs if not p.exists()), None)
        why = f"{missing.name} is missing" if missing else self._touched(self.done[name])
        if why is None:
            return True
        self._redo_from(name, why)
        return False

    def _touched(self, record: dict[str, Any]) -> str | None:
        """Which file a stage wrote is missing or changed since (None: all as written)."""
        stamps = record.get("outputs")
        if not isinstance(stamps, dict):
            return None
        now = file_stamps(self.path.parent, (self.path.parent / rel for rel in stamps))
        for rel, stamp in stamps.items():
            if rel not in now:
                return f"{Path(rel).name} is missing"
            if now[rel] != stamp:
                return f"{Path(rel).name} changed since it was written"
        return None

    def _redo_from(self, name: str, why: str) -> None:
        for later in self.stages[self.stages.index(name) :]:
            if later in self.done:
                del self.done[later]
                self.reasons[later] = f"redo ({why})" if later == name else f"redo (after {name})"

    def mark(self, name: str, **info: Any) -> None:
        """Record ``name`` as done from its current inputs and reads (atomically).

        ``info`` is what the stage reports; an ``outputs`` entry in it (:func:`file_stamps` of
        the files it wrote) is checked by :meth:`finished` on a rerun.
        """
        self.done[name] = {
            "inputs": self.inputs[name],
            **({"reads": self.reads[name]} if name in self.reads else {}),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **info,
        }
        atomic_write_json(self.path, {"format": _FORMAT, "stages": self.done})


def file_stamps(root: Path, files: Iterable[Path]) -> dict[str, list[int]]:
    """Path relative to ``root`` -> ``[size, mtime_ns]`` of each file that exists: what a stage
    wrote, to tell on a rerun that none was deleted, truncated or replaced since."""
    out: dict[str, list[int]] = {}
    for path in files:
        if path.is_file():
            stat = path.stat()
            out[path.relative_to(root).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return out


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two input records, in a few words."""
    parts = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "documents" and isinstance(before, dict) and isinstance(after, dict):
            parts.append(_documents_change(before, after))
        else:
            parts.append(f"{key} {before!r} -> {after!r}")
    return "; ".join(parts)


def _documents_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    added = len(set(after) - set(before))
    removed = len(set(before) - set(after))
    edited = sum(1 for f in set(before) & set(after) if before[f] != after[f])
    counts = [f"{n} {what}" for n, what in ((edited, "edited"), (added, "added"),
                                            (removed, "removed")) if n]  # fmt: skip
    return "documents changed: " + ", ".join(counts)


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``DIR/.lock`` for a run; a second run on the same directory gets one clear error.

    The lock is an OS file lock (``flock``): the kernel drops it when its process dies, so a
    killed run never leaves a stale lock behind; once held, the temp files (``.*.part``) a killed
    run left are removed. Where ``fcntl`` is missing (Windows), no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = out / ".lock"
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ValueError(
                f"{out} is in use by another run ({holder}); wait for it to finish or use "
                "another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        for stray in out.rglob(".*.part"):  # temp files of a killed run; nobody else writes here
            stray.unlink(missing_ok=True)
        yield
    finally:
        fh.close()  # closing drops the lock
