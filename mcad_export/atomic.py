"""All-or-nothing writes: stage beside the target, then rename into place."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def staged_directory(target: Path):
    """Yields an empty staging folder; on success its files replace same-named files in `target`.

    Files already in `target` that the stage did not write are left alone (later pipeline
    stages own them). On any exception the stage is deleted and `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield stage
        target.mkdir(exist_ok=True)
        # Manifest-like files named last so a reader never sees a manifest pointing at missing files.
        entries = sorted(stage.rglob("*"), key=lambda p: (p.name == "manifest.json", len(p.parts)))
        for src in entries:
            dst = target / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(src, 0o666 & ~_UMASK)  # mkdtemp/mkstemp create private files; publish normally
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp files are private; publish like any other file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def replaced_directory(target: Path):
    """Yields an empty staging folder that replaces `target` as a whole on success (a rebuilt
    index must not keep files of the previous one); on any exception `target` is untouched and a
    parent folder made only for it is removed again."""
    target = Path(target)
    made_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    old = None
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_UMASK)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if made_parent and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
