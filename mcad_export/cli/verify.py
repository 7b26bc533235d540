"""`mcad-export verify`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from .common import (
    _add_gate_args,
    _status,
    gate_from,
)

NAME = "verify"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="fidelity gate: every artifact vs PyTorch fp32 on the held-out set",
        description="Cosine, text->image and image->text R@1/5/10 and top-10 overlap for every "
        "artifact in the manifest on its runtime; writes reports/fidelity.json and exits 4 "
        "naming artifact, metric and numbers when any artifact misses the gate.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    p.add_argument(
        "--artifact",
        action="append",
        default=None,
        metavar="PATH",
        help="gate only this artifact (manifest path or name; repeatable); the other records in "
        "reports/fidelity.json are kept",
    )
    _add_gate_args(p)


def run(args, console) -> list[dict]:
    from ..errors import FidelityGateError

    try:
        with _status(console, "verifying") as say:
            records = stages.verify(args.dir, gate_from(args), say, only=args.artifact)
    except FidelityGateError:
        render.fidelity(console, args.dir)
        raise
    render.fidelity(console, args.dir)
    return records
