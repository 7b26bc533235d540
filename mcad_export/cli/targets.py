"""`mcad-export targets`: its arguments and what it runs, side by side."""

from __future__ import annotations

from .. import render

NAME = "targets"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = None


def add(sub) -> None:
    sub.add_parser(
        "targets",
        help="list the compile targets (Snapdragon, Dimensity) and their chip ids",
        description="Every <backend>:<SoC> that `compile --target` accepts, from the SoC table "
        "(mcad_export/compile/socs.json; a new SoC is one row there).",
    )


def run(args, console) -> None:
    render.targets(console)
