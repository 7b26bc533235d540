"""Latency sampling with warm-up and enough repeats for a stable tail (torch-free)."""

from __future__ import annotations

import time

import numpy as np


def measure(
    fn,
    *,
    warmup: int = 5,
    min_repeats: int = 50,
    min_seconds: float = 2.0,
    max_repeats: int = 2000,
    max_seconds: float = 60.0,
) -> dict:
    """Calls fn() until both min_repeats and min_seconds are reached (or a max is hit).

    p99 needs ~100+ samples to mean anything, so fast functions get many; slow ones stop at
    max_seconds and say how many samples the percentiles rest on.
    """
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(samples) >= max_repeats or elapsed >= max_seconds:
            break
        if len(samples) >= min_repeats and elapsed >= min_seconds:
            break
    return summarize(samples)


def summarize(samples_ms) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    half = len(a) // 2
    # Stability: how far the two halves' medians are apart (drift, throttling, noisy neighbours).
    drift = abs(np.median(a[:half]) - np.median(a[half:])) / np.median(a) if half else 0.0
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "repeats": int(len(a)),
        "halves_median_drift": round(float(drift), 4),
        "samples_ms": [round(float(x), 4) for x in a],
    }


def memory_status() -> dict:
    """Resident and peak resident memory of this process in MB, read from the kernel (/proc)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024.0
    return fields
