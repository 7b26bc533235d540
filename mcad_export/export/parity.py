"""Parity of an exported ONNX encoder against the PyTorch reference, on real inputs."""

from __future__ import annotations

import numpy as np

PARITY_MIN_COSINE = 0.9999


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return (a * b).sum(1)


def compare(reference: np.ndarray, exported: np.ndarray, threshold: float = PARITY_MIN_COSINE) -> dict:
    cos = cosine_rows(reference, exported)
    return {
        "samples": int(len(cos)),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "max_abs_diff": float(np.abs(reference - exported).max()),
        "threshold_cosine_min": threshold,
        "passed": bool(cos.min() >= threshold),
    }
