"""Top-k selection shared by the index kinds (numpy only)."""

from __future__ import annotations

import numpy as np


def best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest entries of a 1-D score array, best first (one query's short list)."""
    n = min(k, len(scores))
    best = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return best[np.argsort(-scores[best], kind="stable")]
