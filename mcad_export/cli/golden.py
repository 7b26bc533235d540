"""`mcad-export golden`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from ..render import esc

NAME = "golden"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = None


def add(sub) -> None:
    p = sub.add_parser(
        "golden",
        help="write golden vectors for the Android core's tests",
        description="Token ids (varied corpus), preprocessing tensors for sample images and top-k "
        "over a small index, from an export; android_demo/core/test.sh checks the Java "
        "core reproduces them.",
    )
    p.add_argument("dir", type=Path, help="an export folder with an index")
    p.add_argument("--out", type=Path, default=Path("android_demo/core/src/test/resources/golden"))


def run(args, console) -> None:
    from ..bundle.golden import write_golden

    counts = write_golden(args.dir, args.out)
    console.print(f"golden vectors in {esc(args.out)}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
