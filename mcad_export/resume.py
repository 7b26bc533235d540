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
from .confined import sha256_file
from .contract import LOGS_DIR

STATE_FILE = "pipeline.json"
FORMAT = 2  # 2: files carry ctime, inode and sha256
# Scratch, lock and log files change every run and are no stage's output.
_IGNORED_TOP = {LOGS_DIR}


def snapshot(root: Path, known: dict | None = None, digests: bool = True) -> dict[str, list]:
    """relpath -> [size, mtime_ns, ctime_ns, inode, sha256] of every file under `root` (dot-files and logs/
    excluded; sha256 only with `digests`).

    Whether a file changed is judged by its size and sha256 (RunState.unchanged): mtime can be set back
    (`touch -r` after an edit), so it only decides whether a file must be hashed again. A file whose size, mtime,
    ctime and inode equal its record in `known` keeps that record's digest (ctime cannot be set back by a
    user); any other is hashed, so a copied folder is hashed once and then skips what is unchanged."""
    out: dict[str, list] = {}
    root = Path(root)
    known = known or {}
    if not root.is_dir():
        return out
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel == Path(".") and d in _IGNORED_TOP))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(folder) / name
            st = os.lstat(path)
            key = (rel / name).as_posix()
            record: list = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            if digests:
                previous = known.get(key)
                same = isinstance(previous, list) and len(previous) == 5 and previous[:4] == record
                record.append(previous[4] if same else sha256_file(path) if os.path.isfile(path) else "")
            out[key] = record
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
        return [str(p.resolve()), sorted((k, v[:2]) for k, v in snapshot(p, digests=False).items())]
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


def _content(record) -> tuple | None:
    """What a snapshot record says of a file's bytes: size and sha256."""
    return (record[0], record[4]) if isinstance(record, list) and len(record) == 5 else None


def _malformed(data) -> str | None:
    """What is wrong with a pipeline.json (None: it has the shape `finished` writes)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"format is not {FORMAT}"
    stages, files = data.get("stages"), data.get("files")
    if not isinstance(stages, dict) or not isinstance(files, dict):
        return "stages and files must be objects"
    for name, record in stages.items():
        if not (
            isinstance(record, dict)
            and isinstance(record.get("digest"), str)
            and isinstance(record.get("owns"), list)
            and all(isinstance(f, str) for f in record["owns"])
        ):
            return f"stage {name!r} has no digest and list of owned files"
    if not all(
        isinstance(v, list) and len(v) == 5 and all(type(x) is int for x in v[:4]) and isinstance(v[4], str)
        for v in files.values()
    ):
        return "a file's record is not [size, mtime, ctime, inode, sha256]"
    return None


class RunState:
    """The record of finished stages of one folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / LOGS_DIR / STATE_FILE
        self.stages: dict[str, dict] = {}
        self.files: dict[str, list[int]] = {}
        self.problem: str | None = None  # why the record was set aside (every stage then runs, and says so)
        if not os.path.lexists(self.path):
            return
        from .errors import InputError, UnsafeFolderError, first_line
        from .manifest import read_json_inside

        try:
            data = read_json_inside(self.root, Path(LOGS_DIR) / STATE_FILE, 64 << 20, "it is set aside")
        except UnsafeFolderError:
            raise  # a link where the record goes is refused, never read or set aside
        except (OSError, ValueError, InputError) as e:  # not JSON, too large, unreadable: a hint lost, not an error
            self.problem = f"{LOGS_DIR}/{STATE_FILE} cannot be read ({first_line(e, 120)})"
            return
        problem = _malformed(data)
        if problem:
            self.problem = f"{LOGS_DIR}/{STATE_FILE} is not a record mcad-export wrote ({problem})"
            return
        self.stages, self.files = data["stages"], data["files"]

    def unchanged(self, stage: str, stage_digest: str, now: dict[str, list[int]], outside=None) -> str | None:
        """None when the stage can be skipped, else why it must run. `outside`: the fingerprint of what the stage
        writes outside the folder (bundle: the app's assets), as it is now; it must be as the stage left it."""
        record = self.stages.get(stage)
        if record is None:
            return "not finished before"
        if record["digest"] != stage_digest:
            return "its inputs or options changed"
        if outside is not None and json.loads(json.dumps(outside)) != record.get("outside"):
            return "what it wrote outside the folder changed since"
        changed = [f for f in record["owns"] if _content(now.get(f)) != _content(self.files.get(f))]
        if changed:
            return f"{changed[0]} changed since"
        return None

    def forget_from(self, stages: list[str]) -> None:
        for name in stages:
            self.stages.pop(name, None)

    def finished(self, stage: str, stage_digest: str, before: dict, after: dict, seconds: float, outside=None) -> None:
        owns = sorted(f for f, stat in after.items() if before.get(f) != stat)
        self.stages[stage] = {"digest": stage_digest, "owns": owns, "seconds": round(seconds, 1)}
        if outside is not None:
            self.stages[stage]["outside"] = outside
        self.files = after
        self._write()

    def _write(self) -> None:
        from .atomic import write_text_atomic

        write_text_atomic(
            self.path,
            json.dumps({"format": FORMAT, "stages": self.stages, "files": self.files}, indent=1) + "\n",
            root=self.root,
        )
