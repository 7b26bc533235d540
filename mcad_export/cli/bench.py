"""`mcad-export bench`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from .common import (
    _add_bench_args,
    _status,
    bench_settings,
)

NAME = "bench"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="search latency and memory vs the 100 MB / 8 ms budget, with a PyTorch baseline",
        description="Times every host-runnable encoder, picks the fastest text encoder that does not "
        "miss the fidelity gate, then measures end-to-end queries (tokenize + encoder + "
        "top-10) and peak RSS in a fresh torch-free process, the PyTorch eager fp32 "
        "baseline in another, the peak GEMM rate (physical limit) and index latency vs "
        "gallery size. Writes reports/bench.json and records the choice in the manifest.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_bench_args(p)


def run(args, console) -> int:
    from ..errors import BudgetMissError
    from ..pipeline import _budget_miss

    with _status(console, "benchmarking") as say:
        report = stages.bench(args.dir, bench_settings(args), say)
    render.bench(console, report, args.dir)
    if args.enforce_budget and not report["budget"]["passed"]:
        raise BudgetMissError(_budget_miss(report))
    return 0
