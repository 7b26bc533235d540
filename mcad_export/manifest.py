"""Reading and writing manifest.json, the one artifact contract (see ARCHITECTURE.md)."""

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


def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory} has no {MANIFEST}; run `mcad-export export --out {directory}` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else " (not UTF-8 text)"
        raise InputError(
            f"{path} is not valid JSON{where}; re-export with `mcad-export export --out {directory}`"
        ) from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
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
