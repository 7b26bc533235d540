"""Reading and writing manifest.json, the one artifact contract (see docs/contract.md)."""

from __future__ import annotations

import json
from pathlib import Path

from .contract import MANIFEST, MANIFEST_FORMAT
from .errors import InputError
from .guard import file_digest, validate_manifest


def file_record(root: Path, relpath: str) -> dict:
    path = Path(root) / relpath
    # Cached: the stage that reads this file next finds its digest without hashing it again.
    return {"path": relpath, "sha256": file_digest(path), "size_bytes": path.stat().st_size}


def artifact_files(artifact: dict) -> list[str]:
    """The paths an artifact occupies: its model file, then its external weights (`external_data`), if any."""
    return [artifact["path"]] + ([artifact["external_data"]["path"]] if artifact.get("external_data") else [])


def total_bytes(artifact: dict) -> int:
    """An artifact's model file plus its external weights (`external_data`), if any."""
    return artifact["size_bytes"] + (artifact.get("external_data") or {}).get("size_bytes", 0)


# A real manifest is a few hundred KB (ViT-B-32 with every variant: 160 KB); anything far larger is not one.
MAX_MANIFEST_BYTES = 16 << 20


def read_json_bounded(path: Path, limit: int, fix: str):
    """JSON from a file in an untrusted folder: size bounded before parsing, nesting too deep refused in one line."""
    size = path.stat().st_size
    if size > limit:
        raise InputError(f"{path} is {size / 2**20:.1f} MB, more than the {limit >> 20} MB any such file has; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else " (not UTF-8 text)"
        raise InputError(f"{path} is not valid JSON{where}; {fix}") from None
    except RecursionError:
        raise InputError(f"{path} nests too deeply to be a file mcad-export wrote; {fix}") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None


def read_json_inside(root, rel, limit: int, fix: str):
    """read_json_bounded for a file at a contract name inside an export: no link on the way, a regular file."""
    from . import confined

    return read_json_bounded(confined.checked_file(root, rel), limit, fix)


def read_manifest(directory) -> dict:
    from . import confined

    path = Path(directory) / MANIFEST
    confined.audit(directory)  # no link or hard link at a name the contract owns, before anything is read
    if not path.is_file():
        raise InputError(f"{directory} has no {MANIFEST}; run `mcad-export export --out {directory}` first")
    manifest = read_json_inside(
        directory, MANIFEST, MAX_MANIFEST_BYTES, f"re-export with `mcad-export export --out {directory}`"
    )
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(
            f"{path} has format {found!r}, expected {MANIFEST_FORMAT!r}; re-export with "
            f"`mcad-export export --out {directory}`"
        )
    return validate_manifest(manifest, path)


def dump_manifest(manifest: dict) -> str:
    """manifest.json's text; every artifact goes through ArtifactRecord, so no stage writes a field or value the
    schema lacks (the key order each stage wrote is kept)."""
    from .records import ArtifactRecord

    artifacts = [
        ArtifactRecord.parse(a, f"manifest.json: artifacts[{i}]", "a bug: please report it").to_json()
        for i, a in enumerate(manifest.get("artifacts") or [])
    ]
    return json.dumps({**manifest, "artifacts": artifacts} if "artifacts" in manifest else manifest, indent=2) + "\n"


def tool_versions(*names: str) -> dict:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
