"""Resumable runs: which stages of `run` an unchanged folder can skip.

Each finished stage records, in `DIR/logs/pipeline.json`, a digest of what it was given (its options, the
package version, the files it reads from outside the folder, the previous stage's digest) and the folder files it
wrote or changed. A rerun skips stages up to the first one that is forced, has no record, was given something
else, or whose files have changed since the last recorded state; that stage and every later one run (their
inputs are the earlier stages' outputs). A run killed mid-way therefore resumes at the stage it was in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from . import __version__
from .contract import LOGS_DIR

STATE_FILE = "pipeline.json"
FORMAT = 1
# Scratch, lock and log files change every run and are no stage's output.
_IGNORED_TOP = {LOGS_DIR}


def snapshot(root: Path) -> dict[str, list[int]]:
    """relpath -> [size, mtime_ns] of every file under `root` (dot-files and logs/ excluded)."""
    out: dict[str, list[int]] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel == Path(".") and d in _IGNORED_TOP))
        for name in files:
            if name.startswith("."):
                continue
            st = os.stat(Path(folder) / name)
            out[(rel / name).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def fingerprint(path) -> list:
    """What a file or folder outside the export looks like now (sizes and times, not contents: cheap)."""
    if path is None:
        return []
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        return [str(p.resolve()), sorted(snapshot(p).items())]
    return [str(p), "missing"]


def digest(stage: str, options, previous: str | None, external=()) -> str:
    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    blob = json.dumps([FORMAT, __version__, stage, plain(options), previous, plain(list(external))], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class RunState:
    """The record of finished stages of one folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / LOGS_DIR / STATE_FILE
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            ok = data.get("format") == FORMAT and isinstance(data.get("stages"), dict)
        except (OSError, ValueError, AttributeError):
            ok, data = False, {}
        self.stages: dict[str, dict] = data.get("stages", {}) if ok else {}
        self.files: dict[str, list[int]] = data.get("files", {}) if ok else {}

    def unchanged(self, stage: str, stage_digest: str, now: dict[str, list[int]]) -> str | None:
        """None when the stage can be skipped, else why it must run."""
        record = self.stages.get(stage)
        if record is None:
            return "not finished before"
        if record["digest"] != stage_digest:
            return "its inputs or options changed"
        changed = [f for f in record["owns"] if now.get(f) != self.files.get(f)]
        if changed:
            return f"{changed[0]} changed since"
        return None

    def forget_from(self, stages: list[str]) -> None:
        for name in stages:
            self.stages.pop(name, None)

    def finished(self, stage: str, stage_digest: str, before: dict, after: dict, seconds: float) -> None:
        owns = sorted(f for f, stat in after.items() if before.get(f) != stat)
        self.stages[stage] = {"digest": stage_digest, "owns": owns, "seconds": round(seconds, 1)}
        self.files = after
        self._write()

    def _write(self) -> None:
        from .atomic import write_text_atomic

        write_text_atomic(
            self.path,
            json.dumps({"format": FORMAT, "stages": self.stages, "files": self.files}, indent=1) + "\n",
            root=self.root,
        )
