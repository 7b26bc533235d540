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


def select_artifact(manifest: dict, wanted: str | None = None, encoder: str = "text") -> dict:
    """An artifact record by path or name; default: the deployment choice, else the fp32 ONNX file."""
    candidates = [a for a in manifest["artifacts"] if a["encoder"] == encoder and a["runtime"] in HOST_RUNTIMES]
    wanted = wanted or manifest.get("deployment", {}).get(f"{encoder}_encoder")
    if wanted:
        for a in candidates:
            if wanted in (a["path"], a["name"]):
                return a
        raise InputError(f"no {encoder}-encoder artifact {wanted!r} in the manifest; choose one of: "
                         + ", ".join(a["path"] for a in candidates))
    for a in candidates:
        if a["format"] == "onnx" and a["precision"] == "fp32":
            return a
    raise InputError(f"the manifest lists no host-runnable {encoder} encoder; re-export")


class TextSearch:
    """Load once, then `search(text, k)`; `timed_search` also returns per-stage milliseconds."""

    def __init__(self, directory, artifact: str | None = None, threads: int = 1, index_dir=None, on_stage=None):
        """`on_stage(name)` is called after each part is loaded (the bench's memory breakdown)."""
        on_stage = on_stage or (lambda name: None)
        root = Path(directory)
        manifest = read_manifest(root)
        index_dir = Path(index_dir) if index_dir else root / INDEX_DIR
        GalleryIndex.read_meta(index_dir)  # fail before loading a model when there is no index
        self.artifact = select_artifact(manifest, artifact)
        self.tokenizer = Tokenizer.from_artifacts(root)
        self.tokenizer("warm the BPE cache")
        on_stage("tokenizer")
        self.encode = open_encoder(root / self.artifact["path"], self.artifact["runtime"], threads,
                                   ort_optimization(self.artifact), **feed_options(self.artifact))
        query = self.encode(self.tokenizer("a first query allocates the runtime's buffers"))
        on_stage("model")
        self.index = GalleryIndex.load(index_dir)
        self.index.search(query, 10)
        on_stage("index")
        if self.index.dim != manifest["embed_dim"]:
            raise InputError(f"the index holds {self.index.dim}-d embeddings but the student's are "
                             f"{manifest['embed_dim']}-d; rebuild it with `mcad-export index {root}`")

    def embed(self, texts) -> np.ndarray:
        return self.encode(self.tokenizer(texts)).astype(np.float32)

    def timed_search(self, text: str, k: int = 10) -> tuple[list[Hit], dict]:
        t0 = time.perf_counter()
        ids = self.tokenizer(text)
        t1 = time.perf_counter()
        query = self.encode(ids)
        t2 = time.perf_counter()
        scores, rows = self.index.search(query, k)
        t3 = time.perf_counter()
        hits = [Hit(r + 1, int(i), self.index.path_of(int(i)), float(s))
                for r, (s, i) in enumerate(zip(scores[0], rows[0])) if i >= 0]
        return hits, {"tokenize_ms": (t1 - t0) * 1e3, "encode_ms": (t2 - t1) * 1e3, "search_ms": (t3 - t2) * 1e3,
                      "total_ms": (t3 - t0) * 1e3}

    def search(self, text: str, k: int = 10) -> list[Hit]:
        return self.timed_search(text, k)[0]
