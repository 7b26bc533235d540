"""`mcad-export report`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages

NAME = "report"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "report",
        help="profiling report: reports/report.html (self-contained), report.md, report.json",
        description="Renders the bench, fidelity and artifact numbers into one offline HTML page "
        "(embedded SVG plots), a Markdown summary and the JSON both are made of.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has been benched")
    p.add_argument(
        "--device-bench",
        type=Path,
        metavar="FILE",
        help="device-bench.json from the app's benchmark mode (adb shell am start -n ai.mcad.demo/.MainActivity "
        "--ez bench true; adb pull /sdcard/Android/data/ai.mcad.demo/files/device-bench.json): checked, kept in "
        "reports/ and shown beside the host and AI Hub numbers",
    )


def run(args, console) -> None:
    render.report(console, stages.report(args.dir, args.device_bench))
