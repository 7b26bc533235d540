"""`mcad-export short-query`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from ..options import (
    ShortQueryOptions,
)
from .common import (
    _int_list,
    _status,
)

NAME = "short-query"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "short-query",
        help="export the text encoder that runs only a query's real tokens",
        description="Writes text_encoder.dyn.onnx (dynamic token axis; positional table and causal "
        "mask sliced to the input) and proves it against the full-length PyTorch model on "
        "every held-out caption at its real length (cosine >= 0.9999). A bidirectional text tower "
        "(MobileCLIP2's) fails that cut and gets the same one-query graph fed every "
        "position instead, proved at full length. "
        "`quantize` then makes its INT8 variants and `bench` picks it when it is fastest. "
        "Also writes static length buckets (buckets/text_encoder.len<N>.onnx) that "
        "`compile` turns into NPU graphs, each proved on the captions that fit it.",
    )
    p.add_argument("dir", type=Path, help="an export folder")
    p.add_argument(
        "--buckets",
        type=_int_list,
        default=None,
        metavar="N[,N...]",
        help="static token lengths for NPU targets, below the context length (default 16,32; 0 for none)",
    )


def run(args, console) -> dict:
    with _status(console, "short-query encoder") as say:
        record = stages.short_query(args.dir, ShortQueryOptions(buckets=args.buckets, required=True), say)
    render.short_query(console, record, args.dir)
    return record
