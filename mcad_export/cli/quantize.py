"""`mcad-export quantize`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from .common import (
    _add_gate_args,
    _add_quantize_args,
    _status,
    gate_from,
    quantize_options,
)

NAME = "quantize"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8/16-bit/fp16 variants of every fp32 encoder, tuned to pass the gate",
        description="Writes <encoder>.<precision>.onnx (w8a8, w8a16, dynamic, dyntok, w8, w4, fp16) and "
        "tflite/<encoder>.<precision>.tflite (w8a8, w8a16, dynamic) beside the fp32 files and "
        "registers them in the manifest with sha256, size, recipe, per-layer damage and the "
        "auto mixed-precision steps; variants that still miss the gate are rejected and "
        "listed. Calibrates on --calib-images/--calib-captions or the student's calib split.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_quantize_args(p)
    _add_gate_args(p)


def run(args, console) -> list[dict]:
    with _status(console, "quantizing") as say:
        records = stages.quantize(args.dir, quantize_options(args), gate_from(args), say)
    render.quantized(console, records, args.dir)
    return records
