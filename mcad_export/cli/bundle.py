"""`mcad-export bundle`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from ..defaults import BUDGET_MB
from ..options import (
    BundleOptions,
)
from .common import (
    _status,
)

NAME = "bundle"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "bundle",
        help="copy models, tokenizer, index and thumbnails into the Android demo's assets",
        description="Writes APP/app/src/main/assets/mcad/ with bundle.json (sha256, sizes, "
        "preprocessing, runtime and accelerator per target). Never overwrites or deletes "
        "files it did not write; a rerun with the same inputs changes nothing.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has an index (mcad-export index)")
    p.add_argument("--app", type=Path, required=True, help="the Android demo folder (android_demo in this repo)")
    p.add_argument(
        "--target",
        dest="target_for_bundle",
        metavar="T",
        help="cpu (default: bench's choice), qnn:<SoC>, aihub:<SoC>, litert:mediatek:<SoC>, ... (compile it first)",
    )
    p.add_argument("--with-image-encoder", action="store_true", help="also bundle the image encoder")
    p.add_argument(
        "--budget-mb", type=float, default=BUDGET_MB, help=f"resident budget for the bundle (default {BUDGET_MB:g})"
    )
    p.add_argument("--allow-over-budget", action="store_true")
    p.add_argument(
        "--allow-ungated",
        action="store_true",
        help="ship a device-only artifact (AI Hub, LiteRT NPU) the fidelity gate could not run on this machine; "
        "bundle.json records that its gate never ran (artifacts that failed the gate are never shipped)",
    )


def run(args, console) -> dict:
    options = BundleOptions(
        app=args.app,
        target=args.target_for_bundle,
        with_image_encoder=args.with_image_encoder,
        budget_mb=args.budget_mb,
        allow_over_budget=args.allow_over_budget,
        allow_ungated=args.allow_ungated,
    )
    with _status(console, "bundling") as say:
        result = stages.bundle(args.dir, options, say)
    render.bundle(console, result)
    return result
