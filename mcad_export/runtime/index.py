"""Gallery index: image embeddings saved once, searched by every text query (torch-free).

Kinds (all inner product over L2-normalised embeddings, i.e. cosine):
- `flat`:  exact search with numpy over float32 rows memory-mapped from `embeddings.f32.npy`;
- `sq8`:   faiss 8-bit scalar quantizer (4x smaller scan), then exact re-ranking of a short list;
- `ivfpq`: faiss IVF + product quantization for very large galleries (scans `nprobe` lists of
           compact codes), then exact re-ranking of a short list.
Re-ranking reads only the short list's rows from the memory-mapped float file, so those rows are
the only float pages a query makes resident. faiss is imported only by the kinds that use it.

On disk: the contract's index/ folder (contract.py, docs/contract.md).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import INDEX_CODES, INDEX_EMBEDDINGS, INDEX_FORMAT, INDEX_IVFPQ, INDEX_META, INDEX_PATHS
from ..errors import GalleryIndexError, first_line
from .topk import best_first

INDEX_KINDS = ("flat", "sq8", "ivfpq")

# IVF-PQ needs enough points to train its coarse centroids and 256-entry PQ codebooks.
IVFPQ_MIN_GALLERY = 1000


def _ivfpq_params(count: int, dim: int) -> dict:
    nlist = int(max(1, min(4 * math.sqrt(count), count // 39)))  # faiss warns below 39 points per list
    # PQ sub-vectors of >= 4 dims each; 64 one-byte codes per image for 512-d embeddings.
    m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if (dim % m == 0 and dim // m >= 4) or m == 1)
    # Probe ~2% of the lists (at least 16): at 1M images and 16 probes, top-10 recall fell to 0.61.
    return {"nlist": nlist, "m": m, "nbits": 8, "nprobe": min(nlist, max(16, nlist // 50))}


class GalleryIndex:
    def __init__(
        self,
        kind: str,
        embeddings: np.ndarray,
        paths: Sequence[str],
        *,
        root: str = "",
        params: dict | None = None,
        codes=None,
        meta: dict | None = None,
    ):
        self.kind, self.embeddings, self.paths, self.root = kind, embeddings, paths, root
        self.params = params or {}
        self.codes = codes  # faiss index for sq8/ivfpq, None for flat
        self.meta = meta or {}
        self.rows = lambda ids: self.embeddings[ids]  # exact rows for re-ranking (load() swaps in pread)
        self._rows_checked = False

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        paths: list[str],
        kind: str = "flat",
        *,
        root: str = "",
        rerank: int | None = None,
        seed: int = 0,
    ) -> GalleryIndex:
        if kind not in INDEX_KINDS:
            raise GalleryIndexError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(paths) or not len(paths):
            raise GalleryIndexError(f"need one embedding row per path, got {embeddings.shape} for {len(paths)} paths")
        params: dict = {}
        codes: Any = None  # faiss (SWIG, untyped) or NumpyIVFPQ
        if kind == "sq8":
            import faiss

            codes = faiss.IndexScalarQuantizer(
                embeddings.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            codes.train(embeddings)
            codes.add(embeddings)
            params = {"rerank": rerank or 50}
        elif kind == "ivfpq":
            import faiss

            if len(embeddings) < IVFPQ_MIN_GALLERY:
                raise GalleryIndexError(
                    f"ivfpq needs at least {IVFPQ_MIN_GALLERY} images to train, got "
                    f"{len(embeddings)}; use --kind flat or sq8 for small galleries"
                )
            params = {**_ivfpq_params(*embeddings.shape), "rerank": rerank or 100}
            quantizer = faiss.IndexFlatIP(embeddings.shape[1])
            codes = faiss.IndexIVFPQ(
                quantizer,
                embeddings.shape[1],
                params["nlist"],
                params["m"],
                params["nbits"],
                faiss.METRIC_INNER_PRODUCT,
            )
            codes.cp.seed = seed
            codes.cp.max_points_per_centroid = 64  # k-means on a sample: 4x faster training, same recall here
            codes.train(embeddings)
            codes.add(embeddings)
            codes.nprobe = params["nprobe"]
        return cls(kind, embeddings, list(paths), root=root, params=params, codes=codes)

    def save(self, folder, extra_meta: dict | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not np.isfinite(self.embeddings).all():
            bad = int((~np.isfinite(self.embeddings).all(axis=1)).sum())
            raise GalleryIndexError(f"{bad} gallery embedding row(s) are not finite; refusing to save the index")
        np.save(folder / INDEX_EMBEDDINGS, self.embeddings)
        (folder / INDEX_PATHS).write_text("".join(encode_path(p) + "\n" for p in self.paths), encoding="utf-8")
        files = [INDEX_META, INDEX_PATHS, INDEX_EMBEDDINGS]
        if self.codes is not None:
            import faiss

            faiss.write_index(self.codes, str(folder / INDEX_CODES))
            files.append(INDEX_CODES)
            if self.kind == "ivfpq":
                from .ivfpq import arrays_from_faiss

                np.savez(folder / INDEX_IVFPQ, **arrays_from_faiss(self.codes))
                files.append(INDEX_IVFPQ)
        from ..guard import file_digest

        digests = {
            name: {"sha256": file_digest(folder / name), "size_bytes": (folder / name).stat().st_size}
            for name in files
            if name != INDEX_META
        }
        meta = {
            "format": INDEX_FORMAT,
            "kind": self.kind,
            "count": len(self),
            "dim": self.dim,
            "metric": "inner_product",
            "root": self.root,
            "params": self.params,
            "files": files,
            "paths_encoding": "utf-8, one per line; '%', control characters and non-UTF-8 bytes as %XX",
            "digests": digests,
            **(extra_meta or {}),
        }
        (folder / INDEX_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # -- loading ----------------------------------------------------------------------------
    @staticmethod
    def read_meta(folder) -> dict:
        meta_path = Path(folder) / INDEX_META
        if not meta_path.is_file():
            raise GalleryIndexError(
                f"{folder} holds no gallery index ({INDEX_META} missing); run `mcad-export index` first"
            )
        if meta_path.stat().st_size > 16 << 20:
            raise GalleryIndexError(f"{meta_path} is far larger than an index description; rebuild the index")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise GalleryIndexError(f"{meta_path} is not valid JSON; rebuild it with `mcad-export index`") from None
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise GalleryIndexError(
                f"{meta_path} has format {found!r}, expected {INDEX_FORMAT!r}; rebuild it with `mcad-export index`"
            )
        if meta.get("kind") not in INDEX_KINDS or not isinstance(meta.get("count"), int) or meta["count"] < 1:
            raise GalleryIndexError(
                f"{meta_path} describes no usable index (kind {meta.get('kind')!r}, count "
                f"{meta.get('count')!r}); rebuild it with `mcad-export index`"
            )
        return meta

    @classmethod
    def load(cls, folder) -> GalleryIndex:
        from ..guard import verified

        folder = Path(folder)
        meta = cls.read_meta(folder)
        digests = meta.get("digests") or {}
        for name in meta.get("files", []):
            if name == INDEX_META:
                continue
            if name not in digests:
                raise GalleryIndexError(
                    f"{folder / INDEX_META} lists {name} without its sha256; rebuild it with `mcad-export index`"
                )
            verified(folder, {"path": name, **digests[name]}, "index file", "rebuild it with `mcad-export index`")
        for name in (INDEX_EMBEDDINGS, INDEX_PATHS):
            if name not in meta.get("files", []):
                raise GalleryIndexError(
                    f"{folder / INDEX_META} does not list {name}; rebuild it with `mcad-export index`"
                )
        # mmap: a flat scan streams the file through the page cache. sq8/ivfpq re-rank with pread
        # (RowReader), so the float file is never mapped: page faults on a mapping pull in neighbouring
        # pages too (fault-around, read-ahead), and after a few hundred queries the whole file was resident.
        try:
            embeddings = np.load(folder / INDEX_EMBEDDINGS, mmap_mode="r")
        except ValueError as e:
            raise GalleryIndexError(
                f"{folder / INDEX_EMBEDDINGS} is not a .npy array ({e}); rebuild the index"
            ) from None
        if (
            embeddings.dtype != np.float32
            or embeddings.ndim != 2
            or len(embeddings) != meta["count"]
            or meta.get("dim") != embeddings.shape[1]
        ):
            raise GalleryIndexError(
                f"{folder / INDEX_EMBEDDINGS} holds {embeddings.dtype} {embeddings.shape} but "
                f"{INDEX_META} says {meta['count']} float32 rows of {meta.get('dim')!r}; rebuild it with "
                "`mcad-export index`"
            )
        paths = LazyPaths(folder / INDEX_PATHS, meta["count"])
        codes: Any = None  # faiss (SWIG, untyped) or NumpyIVFPQ
        if meta["kind"] == "ivfpq" and (folder / INDEX_IVFPQ).is_file():
            from .ivfpq import NumpyIVFPQ, check_arrays

            fix = "rebuild it with `mcad-export index`"
            try:
                with np.load(folder / INDEX_IVFPQ, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
            except (OSError, ValueError, EOFError) as e:
                raise GalleryIndexError(
                    f"{folder / INDEX_IVFPQ} is not an index mcad-export wrote ({e}); {fix}"
                ) from None
            problem = check_arrays(arrays, embeddings.shape[1], meta["count"])
            nprobe = (meta.get("params") or {}).get("nprobe")
            if problem is None and not (type(nprobe) is int and nprobe >= 1):
                problem = f"params.nprobe is {nprobe!r}"
            if problem:
                raise GalleryIndexError(f"{folder / INDEX_IVFPQ}: {problem}; {fix}")
            codes = NumpyIVFPQ(arrays, int(nprobe or 1))
        elif meta["kind"] in ("sq8", "ivfpq"):
            import faiss

            # Read, not mapped: the codes are small (100k x 128-d IVF-PQ: 4.8 MB) and faiss searched the mapped
            # IVF-PQ 6x slower here (625 vs 106 us per query at nprobe 25).
            try:
                codes = faiss.read_index(str(folder / INDEX_CODES))
            except RuntimeError as e:  # faiss reports a malformed file as RuntimeError (its C++ exception)
                first = first_line(e)
                raise GalleryIndexError(f"{folder / INDEX_CODES} is not a faiss index ({first}); rebuild it") from None
            if codes.ntotal != meta["count"] or codes.d != embeddings.shape[1]:
                raise GalleryIndexError(
                    f"{folder / INDEX_CODES} holds {codes.ntotal} x {codes.d}, not the index's "
                    f"{meta['count']} x {embeddings.shape[1]}; rebuild it with `mcad-export index`"
                )
            if meta["kind"] == "ivfpq":
                faiss.extract_index_ivf(codes).nprobe = meta["params"]["nprobe"]
        root = meta.get("root", "")
        if root and not Path(root).is_absolute():
            root = str((folder / root).resolve())
        index = cls(meta["kind"], embeddings, paths, root=root, params=meta["params"], codes=codes, meta=meta)
        if codes is not None:
            index.rows = RowReader(folder / INDEX_EMBEDDINGS, embeddings.shape)
        return index

    # -- searching --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 [Q, D] -> (scores [Q, k], ids [Q, k]), best first; exact scores for every kind."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if not np.isfinite(queries).all():
            raise GalleryIndexError("the query embedding is not finite (NaN or Inf); the text encoder is broken")
        k = min(k, len(self))
        if self.codes is None:
            scores = queries @ self.embeddings.T
            if not self._rows_checked:
                # A NaN row scores NaN against every query and ranks anywhere: check the first full scan once.
                _refuse_non_finite(scores[0], np.arange(len(self)))
                self._rows_checked = True
            return _top_k(scores, k)
        shortlist = min(len(self), max(k, self.params.get("rerank", 4 * k)))
        _, candidates = self.codes.search(queries, shortlist)
        scores = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        for q, row in enumerate(candidates):
            row = np.sort(row[row >= 0])  # sorted rows read the float file in order
            exact = self.rows(row) @ queries[q]
            _refuse_non_finite(exact, row)
            best = best_first(exact, k)
            n = len(best)
            scores[q, :n], ids[q, :n] = exact[best], row[best]
            scores[q, n:], ids[q, n:] = -np.inf, -1
        return scores, ids

    def path_of(self, i: int) -> str:
        return str(Path(self.root) / self.paths[i]) if self.root else self.paths[i]


def encode_path(path: str) -> str:
    """One paths.txt line: a newline, any control character, '%' and each byte of a non-UTF-8 name (a
    surrogate-escaped str, as os.fsdecode gives) become %XX, so no file name can split or shift a line."""
    out = []
    for ch in path:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"%{o - 0xDC00:02X}")
        elif o < 0x20 or o == 0x7F or ch == "%":
            out.append(f"%{o:02X}")
        else:
            out.append(ch)
    return "".join(out)


def decode_path(line: str) -> str:
    """Inverse of encode_path: the name as the OS gave it (non-UTF-8 bytes surrogate-escaped)."""
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(line).decode("utf-8", "surrogateescape")


class LazyPaths(Sequence[str]):
    """paths.txt as one bytes blob and line offsets: 100k Python strings cost ~12 MB, this ~3 MB."""

    def __init__(self, path: Path, count: int):
        self._blob = Path(path).read_bytes()
        ends = np.flatnonzero(np.frombuffer(self._blob, np.uint8) == 10)
        if len(ends) < count and len(self._blob) and self._blob[-1:] != b"\n":
            ends = np.append(ends, len(self._blob))
        if len(ends) != count:
            raise GalleryIndexError(
                f"{path} has {len(ends)} lines but the index holds {count} rows; rebuild it with `mcad-export index`"
            )
        self._ends = ends[:count].astype(np.int32 if len(self._blob) < 2**31 else np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        start = int(self._ends[i - 1]) + 1 if i else 0
        raw = self._blob[start : int(self._ends[i])]
        return decode_path(raw.decode("utf-8")) if b"%" in raw else raw.decode("utf-8")

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class RowReader:
    """Reads rows of a float32 .npy file with pread: only the bytes asked for, nothing mapped."""

    def __init__(self, path: Path, shape: tuple):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            read_header(f)
            self._offset = f.tell()
        self._fd = os.open(path, os.O_RDONLY)
        self._row_bytes = int(shape[1]) * 4
        self._dim = int(shape[1])

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        # One pread per row joined into one buffer: 93 us for 100 rows here, vs 133 us for preadv into slices
        # of a preallocated buffer and ~200 us for a frombuffer per row (the syscalls are most of it).
        size, fd, offset, read = self._row_bytes, self._fd, self._offset, os.pread
        data = b"".join([read(fd, size, offset + i * size) for i in ids.tolist()])
        if len(data) != len(ids) * size:
            raise GalleryIndexError("the index's embeddings file is shorter than its row count; rebuild the index")
        return np.frombuffer(data, np.float32).reshape(len(ids), self._dim)

    def __del__(self):
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass


def _refuse_non_finite(scores: np.ndarray, rows: np.ndarray) -> None:
    if not np.isfinite(scores).all():
        bad = rows[~np.isfinite(scores)]
        raise GalleryIndexError(
            f"gallery index row {int(bad[0])} is not finite (NaN or Inf; {len(bad)} such row(s) "
            "seen); rebuild the index with `mcad-export index`"
        )


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


def synthetic_gallery(count: int, dim: int, seed: int = 0, real: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors for latency at sizes no real gallery here reaches: the real embeddings first,
    then random vectors drawn around them (so the score distribution is not pure noise)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, dim), np.float32)
    start = 0
    if real is not None and len(real):
        start = min(count, len(real))
        out[:start] = real[:start]
    chunk = 65536
    for i in range(start, count, chunk):
        n = min(chunk, count - i)
        block = rng.standard_normal((n, dim), dtype=np.float32)
        if real is not None and len(real):
            block = 0.5 * block / math.sqrt(dim) + real[rng.integers(0, len(real), n)]
        out[i : i + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
