"""The text query path: tokenizer -> text encoder -> top-k over the gallery index (torch-free).

This is what a phone runs per query, and what `mcad-export search` and the bench's query probe
run on the host. The text-encoder artifact comes from the manifest: `--artifact` if given, else
the one `bench` chose for deployment (manifest["deployment"]["text_encoder"]), else fp32 ONNX.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import INDEX_DIR
from ..errors import InputError
from ..guard import verified_artifact
from ..manifest import read_manifest
from .encoders import feed_options, open_encoder, ort_optimization
from .index import GalleryIndex
from .tokenizer import Tokenizer

HOST_RUNTIMES = ("onnxruntime", "litert")


@dataclass
class Hit:
    rank: int
    id: int
    path: str
    score: float


def select_artifact(
    manifest: dict, wanted: str | None = None, encoder: str = "text", default_deployed: bool = True
) -> dict:
    """An artifact record by path or name; default: the deployment choice (unless `default_deployed` is off),
    else the fp32 ONNX file."""
    # A length bucket takes only queries that fit it (the app routes them): never a whole query path on its own.
    candidates = [
        a
        for a in manifest["artifacts"]
        if a["encoder"] == encoder and a["runtime"] in HOST_RUNTIMES and not a.get("length_bucket")
    ]
    if default_deployed:
        wanted = wanted or (manifest.get("deployment") or {}).get(f"{encoder}_encoder")
    if wanted:
        for a in candidates:
            if wanted in (a["path"], a["name"]):
                return a
        raise InputError(
            f"no {encoder}-encoder artifact {wanted!r} in the manifest; choose one of: "
            + ", ".join(a["path"] for a in candidates)
        )
    for a in candidates:
        if a["format"] == "onnx" and a["precision"] == "fp32":
            return a
    raise InputError(f"the manifest lists no host-runnable {encoder} encoder; re-export")


def _legacy_encoding_hint(text: str) -> str:
    """A Chinese terminal left at GBK / GB18030 (or Big5) sends bytes Python cannot read as UTF-8 (argv keeps them
    as surrogate escapes): name the encoding they do read as, and what they say, so the fix is obvious."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return ""  # a lone UTF-16 half, not bytes from a terminal
    for encoding in ("gb18030", "big5"):
        try:
            decoded = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return (
            f"; its bytes read as {encoding.upper()} ({decoded[:40]!r}): set the terminal to UTF-8 "
            "(e.g. LANG=zh_CN.UTF-8) or convert the query"
        )
    return ""


def check_query(text, k: int) -> None:
    """A query the user can be answered for: some visible text and 1 <= k."""
    if not isinstance(text, str):
        raise InputError(f'the query must be text (a str), not {type(text).__name__}; e.g. "a red circle"')
    if not text.strip():
        raise InputError('the query is empty; give some words to search for, e.g. "a red circle"')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # What a shell passes for bytes that are not UTF-8 (surrogate escapes), or a lone UTF-16 half.
        raise InputError(
            "the query is not valid Unicode text (undecodable bytes or a lone surrogate); give it as UTF-8"
            + _legacy_encoding_hint(text)
        ) from None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"-k must be a positive number of results, got {k}")


def check_index_matches(manifest: dict, meta: dict, root: Path) -> None:
    """An index embedded by an image encoder this export no longer holds (a re-export of another student, a
    re-quantization) ranks with the wrong geometry: refuse it rather than return confident garbage."""
    built_with = meta.get("image_encoder")
    if not built_with:
        return  # the bench's own galleries, built from this export's index, carry no encoder of their own
    current = next((a for a in manifest["artifacts"] if a["path"] == built_with.get("path")), None)
    if current is None or current.get("sha256") != built_with.get("sha256"):
        raise InputError(
            f"the gallery index was built with {built_with.get('path')} (sha256 "
            f"{str(built_with.get('sha256'))[:12]}...), which is no longer this export's image encoder; "
            f"rebuild it with `mcad-export index {root}`"
        )


class TextSearch:
    """Load once, then `search(text, k)`; `timed_search` also returns per-stage milliseconds."""

    def __init__(self, directory, artifact: str | None = None, threads: int = 1, index_dir=None, on_stage=None):
        """`on_stage(name)` is called after each part is loaded (the bench's memory breakdown)."""
        on_stage = on_stage or (lambda name: None)
        root = Path(directory)
        manifest = read_manifest(root)
        index_dir = Path(index_dir) if index_dir else root / INDEX_DIR
        meta = GalleryIndex.read_meta(index_dir)  # fail before loading a model when there is no index
        check_index_matches(manifest, meta, root)
        self.artifact = select_artifact(manifest, artifact)
        self.tokenizer = Tokenizer.from_artifacts(root, manifest)  # every file listed and digest-checked
        self.tokenizer("warm the BPE cache")
        on_stage("tokenizer")
        self.encode = open_encoder(
            verified_artifact(root, self.artifact),
            self.artifact["runtime"],
            threads,
            ort_optimization(self.artifact),
            **feed_options(self.artifact),
            expected=self.artifact,
        )
        query = self.encode(self.tokenizer("a first query allocates the runtime's buffers"))
        on_stage("model")
        self.index = GalleryIndex.load(index_dir)
        self.index.search(query, 10)
        on_stage("index")
        if self.index.dim != manifest["embed_dim"]:
            raise InputError(
                f"the index holds {self.index.dim}-d embeddings but the student's are "
                f"{manifest['embed_dim']}-d; rebuild it with `mcad-export index {root}`"
            )

    def embed(self, texts) -> np.ndarray:
        return self.encode(self.tokenizer(texts)).astype(np.float32)

    def timed_search(self, text: str, k: int = 10) -> tuple[list[Hit], dict]:
        check_query(text, k)
        t0 = time.perf_counter()
        ids = self.tokenizer(text)
        t1 = time.perf_counter()
        query = self.encode(ids)
        t2 = time.perf_counter()
        if not np.isfinite(query).all():
            raise InputError(
                f"the text encoder {self.artifact['path']} returned non-finite numbers for this query; "
                "its weights are broken: re-export or choose another --artifact"
            )
        scores, rows = self.index.search(query, k)
        t3 = time.perf_counter()
        hits = [
            Hit(r + 1, int(i), self.index.path_of(int(i)), float(s))
            for r, (s, i) in enumerate(zip(scores[0], rows[0]))
            if i >= 0
        ]
        return hits, {
            "tokenize_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "search_ms": (t3 - t2) * 1e3,
            "total_ms": (t3 - t0) * 1e3,
        }

    def search(self, text: str, k: int = 10) -> list[Hit]:
        return self.timed_search(text, k)[0]
