"""`mcad-export compile`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from ..defaults import NUM_CALIB
from .common import (
    _add_compile_args,
    _add_gate_args,
    _status,
    compile_options,
    gate_from,
)

NAME = "compile"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "compile",
        help="compile the encoders for Snapdragon / Dimensity NPUs and gate them",
        description="qnn:<SoC>: w8a16 QDQ + HTP context binary via onnxruntime-qnn, checked on the "
        "x86 HTP simulator (cosine and recall into reports/fidelity.json, runtime "
        "qnn-htp-sim). litert:qualcomm:<SoC> / litert:mediatek:<SoC>: LiteRT AOT compile "
        "of the TFLite encoders (needs the vendor SDK libraries). aihub:<SoC or AI Hub "
        "device>: Qualcomm AI Hub upload, compile and on-device profile (needs an API "
        "token; job ids go to the manifest at once, so a rerun resumes). Files go to "
        "compiled/<backend>-<SoC>/ and into the manifest.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_compile_args(p)
    p.add_argument(
        "--num-calib",
        type=int,
        default=NUM_CALIB,
        help=f"calibration samples for the HTP QDQ model (default {NUM_CALIB})",
    )
    p.add_argument("--allow-small-calibration", action="store_true")
    _add_gate_args(p)


def run(args, console) -> list[dict]:
    from ..errors import FidelityGateError

    try:
        with _status(console, "compiling") as say:
            records = stages.compile(args.dir, compile_options(args), gate_from(args), say)
    except FidelityGateError:
        render.fidelity(console, args.dir)
        raise
    render.compiled(console, records, args.dir)
    return records
