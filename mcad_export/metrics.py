"""Retrieval metrics over paired embeddings (caption i belongs to image i), honest about ties.

A tie between the true item and another is not a hit for the model: the true item is placed uniformly at random
among everything that scores as high, and recall is the *expected* hit rate under that tie-break (computed
exactly, no random numbers, so a rerun gives the same value). A constant or all-zero encoder ties everything and
scores chance (k / N); a model that ranks the true item strictly first scores a hit.

"As high" is within TIE_TOLERANCE: float32 similarities of identical embeddings differ in their last bits when
the BLAS computes different columns with different kernels (OpenBLAS' GEMM edge tiles sum in another order), so
an exact comparison would let a constant encoder win some of its ties by rounding. A cosine difference below 1e-6
orders nothing a user could see.
"""

from __future__ import annotations

import numpy as np

TIE_TOLERANCE = 1e-6  # of the true item's score (at least of 1: cosine similarities)


def _ranks(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query (row): how many other items score above, and how many tie (within the tolerance), the true one."""
    diag = np.diag(sims)[:, None]
    tolerance = TIE_TOLERANCE * np.maximum(1.0, np.abs(diag))
    above = (sims > diag + tolerance).sum(1)
    ties = (np.abs(sims - diag) <= tolerance).sum(1) - 1  # the true item itself is not a tie
    return above, ties


def hit_probability(sims: np.ndarray, k: int) -> np.ndarray:
    """P(the true item is in the top k) per query, ties broken uniformly at random (exact expectation)."""
    above, ties = _ranks(sims)
    return np.clip((k - above) / (ties + 1), 0.0, 1.0)


def recall_at(image_embeds: np.ndarray, text_embeds: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Text->image and image->text recall where caption i belongs to image i (ties as the module says)."""
    sims = text_embeds @ image_embeds.T
    out = {}
    for k in ks:
        out[f"t2i_r{k}"] = float(hit_probability(sims, k).mean())
        out[f"i2t_r{k}"] = float(hit_probability(sims.T, k).mean())
    return out


def t2i_hits_at_1(image_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
    """Per caption: its image ranked strictly first (a tie is a miss). The paired R@1 test's outcomes."""
    above, ties = _ranks(text_embeds @ image_embeds.T)
    return (above == 0) & (ties == 0)
