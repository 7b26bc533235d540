"""What the bench stage's modules share: defaults, the generic queries, Settings and the fresh-process probe runner
(kept apart from the entry point in __init__ so `measure` needs nothing from the package that imports it)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..defaults import BUDGET_MB, BUDGET_MS

DEFAULT_GALLERY_SIZE = 100_000
DEFAULT_SWEEP_SIZES = (1_000, 10_000, 100_000)
GENERIC_QUERIES = (
    "a red circle above a blue square",
    "a photo of a dog playing on the beach",
    "two people riding bicycles",
    "a bowl of fruit on a wooden table",
    "city skyline at night",
    "a cat sleeping on a sofa",
    "snowy mountains under a clear sky",
    "a plate of pasta with tomato sauce",
)


@dataclass(kw_only=True)
class Settings:
    """What to measure (the bench stage's options); the CLI's defaults are these."""

    artifact: str | None = None
    threads: tuple[int, ...] = (1,)
    gallery_size: int = DEFAULT_GALLERY_SIZE
    index_kind: str | None = None
    budget_mb: float = BUDGET_MB
    budget_ms: float = BUDGET_MS
    sweep_sizes: tuple[int, ...] = DEFAULT_SWEEP_SIZES
    sweep_kinds: tuple[str, ...] = ("flat", "sq8", "ivfpq")
    baseline: bool = True
    quick: bool = False
    # the runtimes the deployed text encoder may use; empty: any host runtime. `run --apk` asks for ONNX Runtime, the
    # one the offline APK build carries, so the one-command path never benches a LiteRT encoder it cannot ship
    runtimes: tuple[str, ...] = ()

    def __post_init__(self):
        self.threads, self.sweep_sizes = tuple(self.threads), tuple(self.sweep_sizes)
        self.runtimes = tuple(self.runtimes)

    def check_values(self) -> None:
        """Nonsensical settings fail with one line (also `run`'s preflight, before the export exists)."""
        from ..errors import InputError

        def whole(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not whole(self.gallery_size) or self.gallery_size < 0:
            raise InputError(
                f"--gallery-size must be a number of images (0 = the real index as it is), got {self.gallery_size}"
            )
        if not self.threads or not all(whole(t) and t >= 1 for t in self.threads):
            raise InputError(f"--threads must be positive thread counts, got {','.join(map(str, self.threads))}")
        if not all(whole(n) and n >= 1 for n in self.sweep_sizes):
            raise InputError(
                f"--sweep-sizes must be positive gallery sizes (0 alone skips the sweep), got "
                f"{','.join(map(str, self.sweep_sizes))}"
            )
        if not (self.budget_mb > 0 and self.budget_ms > 0):
            raise InputError(
                f"--budget-mb and --budget-ms must be positive, got {self.budget_mb:g} and {self.budget_ms:g}"
            )

    def check(self, root: Path) -> None:
        """check_values, and a gallery this machine can build, before anything is built."""
        from ..errors import InputError
        from ..manifest import read_manifest

        self.check_values()
        dim = int(read_manifest(root)["embed_dim"])
        largest = max([self.gallery_size, *self.sweep_sizes])
        # The synthetic gallery, its build copy and the saved file's pages: ~3 float32 copies at the peak.
        need = 3 * largest * dim * 4
        available = available_memory()
        if available is not None and need > available:
            raise InputError(
                f"a {largest:,}-image gallery of {dim}-d embeddings needs about {need / 2**30:.1f} GiB of "
                f"memory to build, but {available / 2**30:.1f} GiB is available; choose a smaller "
                "--gallery-size / --sweep-sizes"
            )
        disk = shutil.disk_usage(root).free
        if largest * dim * 4 * 1.2 > disk:
            raise InputError(
                f"a {largest:,}-image gallery needs about {largest * dim * 4 * 1.2 / 2**30:.1f} GiB of disk "
                f"under {root}, but {disk / 2**30:.1f} GiB is free; choose a smaller --gallery-size"
            )

    def measure(self, kind: str) -> dict:
        """Sampling effort: `selection` is a quick ranking, `full` is for the reported numbers."""
        if kind == "selection":
            return {"warmup": 2, "min_repeats": 10, "min_seconds": 0.3, "max_seconds": 4}
        if self.quick:
            return {"warmup": 3, "min_repeats": 30, "min_seconds": 0.5, "max_seconds": 10}
        return {"warmup": 10, "min_repeats": 200, "min_seconds": 3.0, "max_seconds": 30}


def available_memory() -> int | None:
    """MemAvailable in bytes (Linux), or None where the kernel does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_probe(module: str, config: dict, threads: int, workdir: Path, timeout: int = 900) -> dict:
    """One measurement in a fresh process with `threads` threads everywhere (BLAS, OpenMP, runtimes)."""
    from ..isolated import ToolCrashError, run_child

    fd, name = tempfile.mkstemp(suffix=".json", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    path = Path(name)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    what = f"benchmark step {config.get('mode', module)}"
    proc = run_child([sys.executable, "-m", module, str(path)], what, timeout, env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise ToolCrashError(f"{what} printed no result (its last line is not JSON)") from None


def query_texts(manifest: dict, count: int = 64) -> list[str]:
    """Realistic queries: the held-out captions for the embedded student, else generic photo queries."""
    from ..data.scenes import SCENE_KINDS, scene_caption

    evaluation = manifest["evaluation"]
    if evaluation.get("samples") in SCENE_KINDS:
        return [scene_caption(evaluation["samples"], evaluation["split"], i) for i in range(count)]
    return list(GENERIC_QUERIES)
