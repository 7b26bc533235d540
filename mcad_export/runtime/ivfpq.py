"""IVF-PQ search in numpy: the query side of faiss's IndexIVFPQ (inner product, residual PQ), without faiss.

faiss builds the index (k-means, PQ training); `arrays_from_faiss` copies out what a search needs:
coarse centroids, PQ codebooks, and the inverted lists as one code matrix with list offsets.
Searching is then a centroid ranking, one 256-entry table per sub-quantizer, and table look-ups over
the probed lists: <q, c + r> = <q, c> + sum_m T[m, code_m]. The query process skips importing faiss
(~15 MB resident) and the SWIG call overhead; scores equal faiss's up to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .topk import best_first


def arrays_from_faiss(index) -> dict:
    import faiss

    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))  # IndexIVFPQ (extract returns the base class)
    if not getattr(ivf, "by_residual", True) or ivf.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError("only inner-product IVF-PQ with residual encoding is exported")
    pq, invlists = ivf.pq, ivf.invlists
    centroids = faiss.downcast_index(ivf.quantizer).reconstruct_n(0, ivf.nlist)
    codebooks = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    sizes = np.array([invlists.list_size(i) for i in range(ivf.nlist)], np.int64)
    codes = np.empty((int(sizes.sum()), pq.code_size), np.uint8)
    ids = np.empty(int(sizes.sum()), np.int32)
    start = 0
    for i, n in enumerate(sizes):
        if n:
            codes[start : start + n] = faiss.rev_swig_ptr(invlists.get_codes(i), int(n) * pq.code_size).reshape(n, -1)
            ids[start : start + n] = faiss.rev_swig_ptr(invlists.get_ids(i), int(n))
        start += n
    return {
        "centroids": centroids.astype(np.float32),
        "codebooks": codebooks.astype(np.float32),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "codes": codes,
        "ids": ids,
        "nbits": np.array(pq.nbits),
    }


def check_arrays(arrays, dim: int, count: int) -> str | None:
    """What makes ivfpq.npz unusable for an index of `count` rows of `dim` (None: nothing). Shapes, dtypes and
    ranges are checked before anything is sized from them, so a hostile file cannot ask for a huge allocation."""
    need = {"centroids", "codebooks", "offsets", "codes", "ids", "nbits"}
    if not need <= set(arrays):
        return f"it lacks {sorted(need - set(arrays))}"
    c, b, o, codes, ids, nbits = (arrays[k] for k in ("centroids", "codebooks", "offsets", "codes", "ids", "nbits"))
    if nbits.shape != () or nbits.dtype.kind not in "iu" or int(nbits) != 8:
        return "only 8-bit PQ codes are supported"
    if c.dtype != np.float32 or c.ndim != 2 or c.shape[1] != dim or not 1 <= len(c) <= count:
        return f"centroids are {c.dtype} {c.shape}, not float32 [lists <= {count}, {dim}]"
    if b.dtype != np.float32 or b.ndim != 3 or b.shape[1] != 256 or b.shape[0] * b.shape[2] != dim:
        return f"codebooks are {b.dtype} {b.shape}, not float32 [m, 256, {dim} / m]"
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape != (count, b.shape[0]):
        return f"codes are {codes.dtype} {codes.shape}, not uint8 [{count}, {b.shape[0]}]"
    if ids.dtype.kind not in "iu" or ids.shape != (count,) or (count and not (0 <= ids.min() and ids.max() < count)):
        return f"ids are not {count} row numbers from 0 to {count - 1}"
    if o.dtype.kind not in "iu" or o.shape != (len(c) + 1,) or o[0] != 0 or o[-1] != count or (np.diff(o) < 0).any():
        return f"list offsets are not {len(c) + 1} non-decreasing positions from 0 to {count}"
    return None


class NumpyIVFPQ:
    def __init__(self, arrays, nprobe: int):
        if int(arrays["nbits"]) != 8:
            raise ValueError("only 8-bit PQ codes are supported")
        self.centroids, self.codebooks = arrays["centroids"], arrays["codebooks"]
        self.offsets, self.ids = arrays["offsets"], arrays["ids"]
        m, ksub, _ = self.codebooks.shape
        # One byte per code as stored: pre-offsetting them into the flat [m * 256] table as uint16 would double
        # them and cost the query process 6.4 MB more at 100k x 32 (plus a same-size transient at load); the
        # offset is added to the ~2,000 probed rows per query instead (~5 us).
        self.codes = np.ascontiguousarray(arrays["codes"], dtype=np.uint8)
        self._code_offsets = np.arange(m, dtype=np.uint16) * ksub
        self.nprobe = nprobe
        self._ones = np.ones(m, np.float32)  # row sums as a mat-vec: 6x faster than .sum(axis=1) at m=32

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m, ksub, dsub = self.codebooks.shape
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        coarse = queries @ self.centroids.T
        nprobe = min(self.nprobe, len(self.centroids))
        for q, query in enumerate(queries):
            lists = np.argpartition(-coarse[q], nprobe - 1)[:nprobe]
            starts, ends = self.offsets[lists], self.offsets[lists + 1]
            if not (ends - starts).sum():
                continue
            table = (self.codebooks @ query.reshape(m, dsub, 1)).reshape(-1)  # [m * 256]
            # The probed lists' positions as one index array (a few vector ops, not a Python loop per list).
            sizes = ends - starts
            at = np.arange(sizes.sum()) + np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
            codes = np.take(self.codes, at, axis=0) + self._code_offsets  # uint16 [rows, m]
            found = np.take(table, codes) @ self._ones + np.repeat(coarse[q, lists], sizes)
            rows = self.ids[at]
            best = best_first(found, k)
            scores[q, : len(best)], ids[q, : len(best)] = found[best], rows[best]
        return scores, ids
