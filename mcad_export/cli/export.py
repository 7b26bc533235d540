"""`mcad-export export`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from .common import (
    _add_student_args,
    _status,
    export_options,
    student_options,
)

NAME = "export"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "out"


def add(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export image and text encoders to ONNX and TFLite with parity checks",
        description="Writes image_encoder.onnx, text_encoder.onnx, tflite/{image,text}_encoder.tflite, "
        "tokenizer/, reference/ (PyTorch fp32 embeddings of the evaluation set) and "
        "manifest.json atomically into --out (see docs/contract.md for the contract).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_student_args(p)
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="keep the files even if parity (min cosine >= 0.9999) fails; the miss is still reported",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="evaluation samples for parity and the reference embeddings "
        "(default: 1000 held-out scenes for the embedded student, 128 otherwise)",
    )


def run(args, console) -> dict:
    with _status(console, "loading the student") as say:
        manifest = stages.export(args.out, student_options(args), export_options(args), say)
    render.export_summary(console, manifest, args.out)
    return manifest
