"""`mcad-export bench DIR`: search latency and memory of the deployed query path vs the budget.

Every number comes from a fresh child process (bench/probe.py, torch-free; bench/baseline.py,
PyTorch), started with exactly the thread count being measured, so imports, memory and thread
pools of one measurement never leak into another. Writes reports/bench.json.
Kept import-light on purpose: the probes import this package.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    DEFAULT_GALLERY_SIZE,
    DEFAULT_SWEEP_SIZES,
    GENERIC_QUERIES,
    Settings,
    available_memory,
    run_probe,
)

__all__ = [
    "DEFAULT_GALLERY_SIZE",
    "DEFAULT_SWEEP_SIZES",
    "GENERIC_QUERIES",
    "Settings",
    "available_memory",
    "bench",
    "run_probe",
]


def bench(directory, settings: Settings | None = None, progress=None) -> dict:
    """Measures, writes reports/bench.json and records the chosen artifacts as the deployment."""
    from ..atomic import folder_lock, scratch_dir
    from .measure import run_bench

    settings = settings or Settings()
    root = Path(directory)
    with folder_lock(root, "bench"):
        settings.check(root)
        with scratch_dir(root) as workdir:  # a killed bench's leftovers are removed by the next stage
            return run_bench(root, settings, workdir, progress or (lambda message: None))
