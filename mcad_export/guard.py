"""What an export folder may say about itself, and what every stage checks before it trusts a file.

The rule (docs/policies.md, "Security" and "Confinement"): strings read from a manifest or an index never become write
paths, and every path read from them resolves inside the export folder, is a regular file and
matches the sha256 recorded beside it. A manifest that breaks the rule is refused whole, with one
line, before any stage acts on it. Torch-free: the query path runs these checks too.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import confined
from .errors import InputError, TamperedFileError, UnsafeFolderError
from .records import ArtifactRecord

# Relative paths made of plain names: no leading '/', no '..', no empty or hidden components, no
# backslashes or control characters. Everything mcad-export writes fits; nothing else is accepted.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def is_safe_relpath(relpath) -> bool:
    return isinstance(relpath, str) and bool(_SAFE_PATH.match(relpath)) and ".." not in relpath.split("/")


def check_relpath(relpath, where: str, source: Path) -> str:
    if not is_safe_relpath(relpath):
        raise InputError(
            f"{source}: {where} {relpath!r} points outside the export folder or is not a plain relative "
            "path (absolute paths and '..' are refused); re-export the folder"
        )
    return relpath


def validate_manifest(manifest, source: Path) -> dict:
    """Refuses a manifest whose path-bearing fields could point outside the folder or steer a write."""
    if not isinstance(manifest, dict):
        raise InputError(f"{source} is not a manifest (a JSON object expected); re-export the folder")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        raise InputError(f"{source} has no list of artifacts; re-export the folder")
    for i, a in enumerate(artifacts):
        check_relpath(a.get("path"), f"artifacts[{i}].path", source)
        name = a.get("name")
        if not isinstance(name, str) or not _SAFE_NAME.match(name) or name.startswith("."):
            raise InputError(
                f"{source}: artifacts[{i}].name {name!r} is not a plain file name (no '/', no '..'); "
                "re-export the folder"
            )
        # The record's schema and enums (records.py): unknown fields or values are refused, never carried along.
        ArtifactRecord.parse(a, f"{source}: artifacts[{i}]", "re-export the folder")
        if a.get("external_data"):
            check_relpath((a["external_data"] or {}).get("path"), f"artifacts[{i}].external_data.path", source)
        for key, value in (a.get("files") or {}).items():
            check_relpath(
                value.get("path") if isinstance(value, dict) else value, f"artifacts[{i}].files.{key}", source
            )
    for i, f in enumerate(manifest.get("files") or []):
        check_relpath(f.get("path") if isinstance(f, dict) else f, f"files[{i}].path", source)
    text = manifest.get("text") or {}
    for i, b in enumerate(text.get("length_buckets") or []):
        check_relpath(b.get("path") if isinstance(b, dict) else b, f"text.length_buckets[{i}].path", source)
    if "tokenizer_dir" in text:
        check_relpath(text["tokenizer_dir"], "text.tokenizer_dir", source)
    reference = (manifest.get("evaluation") or {}).get("reference")
    if reference is not None:
        check_relpath(reference, "evaluation.reference", source)
    return manifest


_FIX = "rebuild it (re-export, or rerun the stage that wrote it)"


def inside(root: Path, relpath: str, what: str = "file", fix: str = _FIX) -> Path:
    """`root/relpath`, refused when a link lies on the way (mcad-export never makes one, so a link can only lead
    outside what it wrote) or it is no regular file (confined.checked_file)."""
    root = Path(root)
    if not is_safe_relpath(relpath):
        raise InputError(f"refusing {what} {relpath!r}: not a plain relative path inside {root}")
    path = root / relpath
    try:
        confined.checked_file(root, relpath)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path} is missing: {what} {relpath!r} is listed but not there; {fix}") from None
    except UnsafeFolderError as e:
        raise UnsafeFolderError(f"refusing {what}: {e}") from None
    return path


def verified(root: Path, record: dict, what: str = "file", fix: str = _FIX) -> Path:
    """The file a record ({"path", "sha256", "size_bytes"}) names, inside `root` and matching its digest."""
    path = inside(root, record.get("path"), what, fix)
    expected = record.get("sha256")
    if expected is None:
        return path  # records without a digest (none written today) can only be checked for place and type
    size = path.stat().st_size
    if record.get("size_bytes") not in (None, size) or file_digest(path) != expected:
        raise TamperedFileError(
            f"{path} does not match the sha256 its record lists (changed or corrupted since it "
            f"was written); restore it, or {fix}"
        )
    return path


def verified_artifact(root: Path, artifact: dict) -> Path:
    """An artifact's model file, and its external-data file where it has one, both checked."""
    path = verified(root, artifact, f"{artifact.get('encoder', '')} encoder".strip())
    data = artifact.get("external_data")
    if data:
        verified(root, data, "external weights")
    return path


def verified_files(root: Path, manifest: dict, under: str) -> list[Path]:
    """Every manifest `files` record below the folder `under` (e.g. the tokenizer), checked."""
    prefix = under.rstrip("/") + "/"
    return [verified(root, f, "file") for f in manifest.get("files") or [] if f.get("path", "").startswith(prefix)]


def reference_record(manifest: dict) -> dict:
    """The reference embeddings' record (path + digest) from the manifest's `files`."""
    path = manifest["evaluation"]["reference"]
    return next((f for f in manifest.get("files") or [] if f.get("path") == path), {"path": path})


def reference_embeddings(root: Path, manifest: dict) -> dict:
    """The reference embeddings (digest-checked), refused in one line unless both arrays are finite float32
    [evaluation count, embed_dim] (a hostile npz: object arrays, cut rows, another width)."""
    import numpy as np

    path = verified(root, reference_record(manifest), "reference embeddings")
    fix = "re-export the folder"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("image_embeds", "text_embeds") if k in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path} is not a reference npz mcad-export wrote ({e}); {fix}") from None
    rows, dim = (manifest.get("evaluation") or {}).get("count"), manifest.get("embed_dim")
    for key in ("image_embeds", "text_embeds"):
        a = arrays.get(key)
        if a is None or a.dtype != np.float32 or a.ndim != 2 or a.shape != (rows, dim) or not np.isfinite(a).all():
            found = "missing" if a is None else f"{a.dtype} {a.shape}"
            raise InputError(f"{path}: {key} is {found}, not finite float32 [{rows}, {dim}]; {fix}")
    return arrays


# -- digest cache ---------------------------------------------------------------------------------------
# Hashing a 250 MB encoder on every `search` costs ~0.2 s. A digest is reused while the file's device,
# inode, size, mtime and ctime are all unchanged; ctime cannot be set back by a user, so any write (or
# `touch -d`) re-hashes. The cache lives in the user's cache folder, not in the export, so whoever can
# write the export cannot also write the digests it is checked against.


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcad-export" / "digests.json"


_memory: dict[str, list] = {}


def _key(st: os.stat_result) -> tuple[str, list]:
    return f"{st.st_dev}:{st.st_ino}", [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def sha256_of(path: Path) -> str:
    """The file's sha256, always read in full (file_digest is the cached form)."""
    # hashlib is imported only when hashing (confined.sha256_file): it maps OpenSSL's libcrypto (+4 MB resident),
    # which the query path of a warm cache never needs.
    return confined.sha256_file(path)


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256_of, reused while the file is provably unchanged (see above)."""
    st = os.stat(path)
    key, fingerprint = _key(st)
    cached = _memory.get(key) or _load_cache().get(key)
    # The cache is a hint: an entry of any other shape (a corrupt or foreign file) is ignored, never fatal.
    if isinstance(cached, list) and len(cached) == 4 and cached[:3] == fingerprint and isinstance(cached[3], str):
        return cached[3]
    value = sha256_of(path)
    if _key(os.stat(path))[1] == fingerprint:  # unchanged while hashing
        _memory[key] = [*fingerprint, value]
        _store_cache(key, [*fingerprint, value])
    return value


def _load_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store_cache(key: str, value: list, limit: int = 4096) -> None:
    path = _cache_file()
    try:
        data = _load_cache()
        data[key] = value
        if len(data) > limit:
            data = dict(list(data.items())[-limit:])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs re-hashing next time
