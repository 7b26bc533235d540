"""All-or-nothing writes, one writer per export folder.

Staging folders live inside the folder they publish into (`<target>/.mcad-staging/<random>/`, or the
parent's for a folder replaced whole), so the final rename never crosses a filesystem (an `--out` that
is a mount point) and a killed process leaves nothing outside the export. Each staging folder holds an
flock for its lifetime; the next stage that stages there removes every one whose lock is free, i.e. whose
process is gone. `folder_lock` serialises the stages that read-modify-write a folder's manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import tempfile
from pathlib import Path

from . import confined
from .confined import UMASK, publish_mode
from .contract import LOCK_FILE, STAGING_DIR
from .errors import FolderBusyError, OutputDirError

_STAGE_LOCK = ".owner"
__all__ = [
    "LOCK_FILE",
    "STAGING_DIR",
    "folder_lock",
    "publish_mode",
    "replaced_directory",
    "scratch_dir",
    "staged_directory",
]


# -- staging folders ------------------------------------------------------------------------------------


def clean_stale_stages(area: Path, orphan_age_s: float = 60.0) -> int:
    """Removes staging folders under `area` (a checked real folder) whose owner died (their flock is free).

    Only real folders are looked at; a link or file planted among them is never followed or removed."""
    import time

    removed = 0
    for entry in os.scandir(area):
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        stage = Path(entry.path)
        try:
            fd = os.open(stage / _STAGE_LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            # No owner file: debris of a crash between creating a stage and locking it (or one being born
            # right now, hence the age).
            with contextlib.suppress(OSError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > orphan_age_s:
                    removed += confined.remove_tree(area, entry.name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live process owns it
        removed += confined.remove_tree(area, entry.name)
        os.close(fd)
    return removed


_active: list[Path] = []  # scratch folders of this process, innermost last (active_scratch)


def active_scratch() -> Path | None:
    """The scratch folder the running stage holds, if any: child processes (isolated.run_isolated) put their
    temporary files there, inside the export, so a killed run leaves nothing in the system's temp folder."""
    return _active[-1] if _active else None


@contextlib.contextmanager
def scratch_dir(area: Path):
    """A private folder inside `area`/.mcad-staging, locked while in use and removed afterwards."""
    Path(area).mkdir(parents=True, exist_ok=True)
    base = confined.real_dir(area, STAGING_DIR, create=True)
    clean_stale_stages(base)
    stage = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
    fd = os.open(stage / _STAGE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _active.append(stage)
    try:
        yield stage
    finally:
        _active.remove(stage)
        shutil.rmtree(stage, ignore_errors=True)
        os.close(fd)
        with contextlib.suppress(OSError):
            base.rmdir()  # only when no other stage is using it


def _publishable(stage: Path) -> list[Path]:
    # Manifest-like files named last so a reader never sees a manifest pointing at missing files.
    return sorted(
        (p for p in stage.rglob("*") if p.name != _STAGE_LOCK), key=lambda p: (p.name == "manifest.json", len(p.parts))
    )


def _check_collisions(stage: Path, target: Path, entries: list[Path]) -> None:
    """Before anything is moved: a user's file where a folder goes (or the reverse) refuses the publish."""
    for src in entries:
        dst = target / src.relative_to(stage)
        if os.path.islink(dst):
            confined.real_dir(target, src.relative_to(stage))  # names the link in one line
        if not dst.exists():
            continue
        if src.is_dir() and not dst.is_dir():
            raise OutputDirError(
                f"cannot write {target}: {dst} is a file where mcad-export writes a folder; "
                "move it away or choose another folder (nothing was changed)"
            )
        if not src.is_dir() and dst.is_dir() and not dst.is_symlink():
            raise OutputDirError(
                f"cannot write {target}: {dst} is a folder where mcad-export writes a file; "
                "move it away or choose another folder (nothing was changed)"
            )


@contextlib.contextmanager
def staged_directory(target: Path):
    """Yields an empty staging folder; on success its files replace same-named files in `target`.

    Files already in `target` that the stage did not write are left alone (later pipeline
    stages own them). On any exception the stage is deleted and `target` is as it was (a
    `target` made for this stage is removed again).
    """
    target = Path(target)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        with scratch_dir(target) as stage:
            yield stage
            entries = _publishable(stage)
            _check_collisions(stage, target, entries)
            for src in entries:
                rel = src.relative_to(stage)
                if src.is_dir():
                    confined.real_dir(target, rel, create=True)
                else:
                    publish_mode(src)
                    confined.publish(target, src, rel)
    except BaseException:
        if created:
            _remove_if_only_ours(target)
        raise


def _remove_if_only_ours(folder: Path) -> None:
    """Removes a folder this process made when it holds nothing but mcad-export's lock and staging."""
    with contextlib.suppress(OSError):
        if {p.name for p in folder.iterdir()} <= {STAGING_DIR, LOCK_FILE}:
            shutil.rmtree(folder)


def write_text_atomic(path: Path, text: str, *, root) -> None:
    """All-or-nothing write of `path` inside `root`, through confined.write_at (no link is ever written through)."""
    confined.write_at(path, text, root=root)


@contextlib.contextmanager
def replaced_directory(target: Path, *, root):
    """Yields an empty staging folder that replaces `target` (inside `root`) as a whole on success (a rebuilt
    index must not keep files of the previous one); on any exception `target` is untouched and a
    parent folder made only for it is removed again."""
    target, root = Path(target), Path(root)
    made_parent = not target.parent.exists()
    root.mkdir(parents=True, exist_ok=True)
    confined.real_dir(root, target.parent.relative_to(root), create=True)
    if os.path.lexists(target):
        confined.real_dir(root, target.relative_to(root))  # a link where the folder goes is refused, not replaced
    try:
        with scratch_dir(target.parent) as scratch:
            stage = scratch / target.name
            stage.mkdir()
            yield stage
            os.chmod(stage, 0o777 & ~UMASK)
            if target.exists():
                os.replace(target, scratch / f"{target.name}.old")  # removed with the scratch folder
            os.replace(stage, target)
    except BaseException:
        if made_parent:
            with contextlib.suppress(OSError):
                target.parent.rmdir()
        raise


# -- one writer per folder ------------------------------------------------------------------------------


def ensure_writable(out_dir: Path) -> None:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"output path exists and is not a directory: {out_dir}")
    parent = out_dir if out_dir.exists() else _existing_parent(out_dir)
    try:
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise OutputDirError(f"cannot write to {parent}: it is on a read-only filesystem; choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"cannot write to {parent} (permission denied); choose another folder")


def _existing_parent(path: Path) -> Path:
    for p in [path, *path.absolute().parents]:
        if p.exists():
            if not p.is_dir():
                raise OutputDirError(f"{p} is a file, so {path} cannot be created; choose another folder")
            return p
    return Path("/")


_held: dict[str, list] = {}  # resolved folder -> [fd, depth]: stages of one `run` nest


@contextlib.contextmanager
def folder_lock(folder: Path, stage: str):
    """Exclusive write lock on an export folder for the whole of a stage (read manifest ... write manifest).

    A second process refuses at once with one line naming the holder; nested stages of one process pass."""
    folder = Path(folder)
    ensure_writable(folder)  # a read-only or unwritable folder is named before anything else is tried
    created = not folder.exists()
    if created:
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise OutputDirError(f"cannot create {folder}: {e.strerror}") from None
    key = str(folder.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    lock_path = folder / LOCK_FILE
    while True:
        try:
            fd = confined.open_lock(folder)
        except OSError as e:
            raise OutputDirError(f"cannot write to {folder} ({e.strerror}); choose another folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise FolderBusyError(
                f"{folder} is being written by another mcad-export stage ({holder}); wait for it "
                "to finish: stages on one folder run one at a time"
            ) from None
        # The holder unlinks the file when done; a lock taken on an unlinked file guards nothing, so retry.
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {stage}".encode(), 0)
    _held[key] = [fd, 1]
    ok = False
    try:
        confined.audit(folder)  # a link planted at a name we own is named before the stage touches anything
        yield
        ok = True
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # still holding the lock: nobody can have taken it in between
        if created and not ok:
            _remove_if_only_ours(folder)
        os.close(fd)


def locks_folder(stage: str, arg: int = 0):
    """Decorator: the stage entry function's `arg`-th positional argument is the folder it writes."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with folder_lock(Path(args[arg]), stage):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
