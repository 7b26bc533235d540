"""Reading an export's tokenizer files as untrusted input (both tokenizers use it).

Every file is one the manifest lists with its sha256 (guard.verified: inside the export, no link, the recorded
bytes); JSON is size-bounded and type-checked; ids and settings are range-checked, so a hostile file is one
`error:` line, never a traceback or a huge allocation.
"""

from __future__ import annotations

from pathlib import Path

from ..contract import TOKENIZER_CONFIG, TOKENIZER_DIR
from ..errors import InputError

MAX_CONTEXT = 4096  # SigLIP 2 uses 64, CLIP 77, BERT towers 512: a larger context is no tokenizer we wrote
MAX_TOKENIZER_FILE_BYTES = 64 << 20  # 256k-entry vocabularies are ~5 MB


def tokenizer_files(directory, manifest: dict | None = None) -> dict[str, Path]:
    """The export's tokenizer files by name, each listed in the manifest's `files` with its sha256 and checked
    (guard.verified: inside the export, no link, a regular file, the recorded bytes). Nothing unlisted is read.
    `manifest`: the folder's manifest when the caller has already read it (else it is read here)."""
    from ..guard import verified_files
    from ..manifest import read_manifest

    manifest = read_manifest(directory) if manifest is None else manifest
    return {p.name: p for p in verified_files(Path(directory), manifest, TOKENIZER_DIR)}


def need(files: dict[str, Path], name: str, where: Path) -> Path:
    if name not in files:
        raise InputError(
            f"{where / name} is missing or not listed (with its sha256) in the manifest's files; re-export the folder"
        )
    return files[name]


def read_json_file(path: Path, kind: type, described: str):
    """A tokenizer JSON file, its size bounded and its top-level type checked, with one-line errors."""
    from ..manifest import read_json_bounded

    value = read_json_bounded(Path(path), MAX_TOKENIZER_FILE_BYTES, "re-export the folder")
    if not isinstance(value, kind):
        raise InputError(f"{path} is not {described}; re-export the folder")
    return value


def check_vocab(encoder: dict, path: Path) -> None:
    """Token -> id with ids 0..n-1, each once: what every vocabulary mcad-export writes looks like."""
    ids = list(encoder.values())
    if not ids or not all(type(i) is int for i in ids) or sorted(ids) != list(range(len(ids))):
        raise InputError(f"{path} is not a vocabulary (string tokens with ids 0..n-1, each once); re-export the folder")


def config_int(config: dict, key: str, where: Path, low: int, high: int, default: int | None = None) -> int:
    value = config.get(key, default)
    if type(value) is not int or not low <= value <= high:
        raise InputError(
            f"{where / TOKENIZER_CONFIG}: {key} is {value!r}, not a whole number from {low} to {high}; "
            "re-export the folder"
        )
    return value


def config_token(config: dict, key: str, vocabulary, where: Path) -> str:
    value = config.get(key)
    if not isinstance(value, str) or value not in vocabulary:
        raise InputError(f"{where / TOKENIZER_CONFIG}: {key} {value!r} is not in the vocabulary; re-export the folder")
    return value
