"""The one place that decides how mcad-export opens, creates, replaces and deletes anything in an export or app
folder (docs/policies.md, "Confinement").

A folder is untrusted input: it may arrive from someone else with links planted at the very names mcad-export
owns (`.mcad-staging`, `.mcad-lock`, `reports/`, `index/` ...). mcad-export never creates a link, so:

- below a folder's root, a symbolic link on any path mcad-export reads, writes or deletes is refused with one
  line (the root itself may be a link: the user named it);
- folders are entered and created one component at a time with lstat, never through a link;
- files are written to a temporary name in their checked folder, then renamed over the old name: a rename
  replaces a link or hard link by the new file and never writes through it;
- the lock file is opened with O_NOFOLLOW and must be a regular file with a single link (it is written in place);
- a file is deleted only when it is a regular file whose bytes match the digest recorded when mcad-export wrote
  it; a tree only when it is a real folder (shutil.rmtree never follows links inside one);
- `audit` refuses a link, or a hard-linked file, at any name the contract owns before a stage starts, so a
  planted link is named at once rather than met half-way through a stage.

Torch-free: the query path audits too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .contract import LOCK_FILE, OWNED_FILES, OWNED_FOLDERS, OWNED_PREFIXES
from .errors import UnsafeFolderError

UMASK = os.umask(0)  # read once (os.umask can only be read by setting it)
os.umask(UMASK)


def publish_mode(path) -> None:
    """The permissions any file we write gets (0666 less the umask): mkstemp/mkdtemp create private ones."""
    os.chmod(path, 0o666 & ~UMASK)


_FIX = "mcad-export never makes links: replace it with a real file or folder (e.g. copy the export with `cp -rL`)"


def _rel(root: Path, path: Path) -> Path:
    try:
        return Path(path).relative_to(root)
    except ValueError:
        raise UnsafeFolderError(f"refusing {path}: it is not inside {root}") from None


def _refuse_link(path: Path) -> None:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    raise UnsafeFolderError(
        f"refusing {path}: it is a symbolic link (to {target}), outside what mcad-export wrote; {_FIX}"
    )


def real_dir(root, rel=".", *, create: bool = False) -> Path:
    """`root/rel` as a real folder: every component below root lstat'ed (no links), made one by one if `create`."""
    root = Path(root)
    path = root
    for part in Path(rel).parts:
        if part in (".", ""):
            continue
        if part == "..":
            raise UnsafeFolderError(f"refusing {root / rel}: '..' leaves {root}")
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(path, 0o777)
            except FileExistsError:
                pass  # made by a racing stage: checked below like any other
            st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            _refuse_link(path)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFolderError(f"refusing {path}: a file where mcad-export keeps a folder; move it away")
    return path


def checked_file(root, rel, *, single_link: bool = False) -> Path:
    """`root/rel` for reading: its folders real, the file itself regular and no link (and one link if asked)."""
    root, rel = Path(root), Path(rel)
    real_dir(root, rel.parent)
    path = root / rel
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        _refuse_link(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFolderError(f"refusing {path}: not a regular file")
    if single_link and st.st_nlink > 1:
        raise UnsafeFolderError(f"refusing {path}: it is hard-linked ({st.st_nlink} names); {_FIX}")
    return path


def write_bytes(root, rel, data: bytes) -> Path:
    """Writes `root/rel` all or nothing: a temporary file in its checked folder, then a rename over the name."""
    root, rel = Path(root), Path(rel)
    folder = real_dir(root, rel.parent, create=True)
    path = folder / rel.name
    fd, tmp = tempfile.mkstemp(prefix=f".{rel.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def write_text(root, rel, text: str) -> Path:
    return write_bytes(root, rel, text.encode("utf-8"))


def write_at(path, data: bytes | str, *, root) -> Path:
    """write_bytes/write_text for a path already joined to its root (the form most stages hold)."""
    rel = _rel(Path(root), Path(path))
    return write_bytes(root, rel, data.encode("utf-8") if isinstance(data, str) else data)


def publish(root, src: Path, rel) -> None:
    """Moves a finished file (made in staging) to `root/rel`, its folders checked and made without links."""
    rel = Path(rel)
    folder = real_dir(root, rel.parent, create=True)
    os.replace(src, folder / rel.name)


def remove_file(root, rel, sha256: str | None) -> bool:
    """Deletes `root/rel` only if it is a regular file (not a link) whose bytes match `sha256`, the digest
    recorded when mcad-export wrote it. Anything else is left where it is; returns whether it was deleted."""
    root, rel = Path(root), Path(rel)
    try:
        real_dir(root, rel.parent)
        st = os.lstat(root / rel)
    except (FileNotFoundError, NotADirectoryError, UnsafeFolderError):
        return False
    if not stat.S_ISREG(st.st_mode) or sha256 is None or sha256_file(root / rel) != sha256:
        return False
    os.unlink(root / rel)
    return True


def sha256_file(path) -> str:
    """A file's sha256, read in full (the one implementation; guard.file_digest caches it)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_contract_file(root, rel) -> bool:
    """Deletes `root/rel`, a name the contract gives a file mcad-export rewrites on every run without recording
    its digest (a stage's log): only a regular file with one link, in real folders."""
    root, rel = Path(root), Path(rel)
    try:
        checked_file(root, rel, single_link=True)
    except (FileNotFoundError, NotADirectoryError, UnsafeFolderError):
        return False
    os.unlink(root / rel)
    return True


def remove_tree(root, rel) -> bool:
    """Deletes the real folder `root/rel` and what it holds; a link there is never followed (nor removed)."""
    try:
        path = real_dir(root, rel)
    except (FileNotFoundError, UnsafeFolderError):
        return False
    shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: links inside are unlinked, never followed
    return not os.path.lexists(path)


def open_lock(root) -> int:
    """The folder's lock file, opened without following a link; refused unless a regular file with one link
    (it is truncated and written in place, so a hard link would write to another file)."""
    path = Path(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666 & ~UMASK)
    except OSError:
        if os.path.islink(path):
            _refuse_link(path)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UnsafeFolderError(
            f"refusing {path}: it is hard-linked ({st.st_nlink} names) or not a regular file, and the lock is written "
            f"in place; {_FIX}"
        )
    return fd


def audit(root) -> None:
    """Refuses a link, or a hard-linked file, at any name the contract owns in `root` or below an owned folder.

    Names the user put beside the export are not ours and are not looked at."""
    root = Path(root)
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        name = entry.name
        if name in OWNED_FOLDERS:
            _audit_entry(entry, recurse=True)
        elif name in OWNED_FILES or name.startswith(OWNED_PREFIXES):
            _audit_entry(entry, recurse=False)


def audit_tree(folder) -> None:
    """audit for a folder mcad-export owns whole (an app's assets folder): every entry below it."""
    folder = Path(folder)
    if os.path.islink(folder):
        _refuse_link(folder)
    if folder.is_dir():
        for entry in os.scandir(folder):
            _audit_entry(entry, recurse=True)


def _audit_entry(entry: os.DirEntry, recurse: bool) -> None:
    if entry.is_symlink():
        _refuse_link(Path(entry.path))
    if entry.is_dir(follow_symlinks=False):
        if recurse:
            for child in os.scandir(entry.path):
                _audit_entry(child, recurse=True)
        return
    if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_nlink > 1:
        raise UnsafeFolderError(
            f"refusing {entry.path}: it is hard-linked ({entry.stat(follow_symlinks=False).st_nlink} names), so "
            f"its bytes may belong to a file outside the export; {_FIX}"
        )
