"""`mcad-export index`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render, stages
from ..defaults import INDEX_BATCH
from ..options import (
    IndexOptions,
)
from .common import (
    _add_index_kind,
)

NAME = "index"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "dir"


def add(sub) -> None:
    p = sub.add_parser(
        "index",
        help="embed a folder of images into a gallery index (flat, sq8, ivfpq)",
        description="Embeds every .jpg/.jpeg/.png/.bmp/.webp under --images (a folder, recursively; a glob; or a "
        "list file), in sorted path order (EXIF orientation "
        "applied; unreadable, > 200 MP or non-finite images are skipped and counted) with "
        "the fp32 image encoder (or --artifact) and saves DIR/index/ (see docs/contract.md). "
        "Without --images: the embedded student's held-out gallery, written to DIR/gallery/. --engine ray "
        "embeds on a Ray cluster (Ray Data actors; shards in DIR/index_shards/, a rerun computes only the "
        "missing ones); the workers must reach the image paths.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    p.add_argument(
        "--images",
        metavar="PATH|GLOB|LIST",
        help="a folder (searched recursively), a glob ('photos/**/*.jpg') or a list file (.txt/.lst: one path "
        "per line, relative to the list); rows are in sorted path order",
    )
    _add_index_kind(p)
    p.add_argument("--artifact", metavar="PATH", help="image-encoder artifact (default: the fp32 ONNX file)")
    p.add_argument("--batch", type=int, default=INDEX_BATCH, help=f"images per encoder call (default {INDEX_BATCH})")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default=IndexOptions.engine,
        help="local (default, this process) or ray (Ray Data actors; the `ray` extra)",
    )
    p.add_argument("--address", metavar="ADDR", help="ray: an existing cluster, e.g. ray://head:10001 or auto")
    p.add_argument("--workers", type=int, default=IndexOptions.workers, help="ray: actors (default 1)")
    p.add_argument(
        "--cpus-per-worker",
        type=int,
        default=IndexOptions.cpus_per_worker,
        help="ray: each actor's CPUs and ONNX Runtime threads (default 1)",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=IndexOptions.shard_size,
        help="ray: images per shard, the unit written to DIR/index_shards/ and resumed (default 128)",
    )


def run(args, console) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    options = IndexOptions(
        images=args.images,
        kind=args.kind,
        artifact=args.artifact,
        batch=args.batch,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        shard_size=args.shard_size,
    )
    with Progress(
        TextColumn("embedding images"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("index", total=None)
        meta = stages.index(args.dir, options, lambda done, total: bar.update(task, completed=done, total=total))
    render.index(console, meta, args.dir)
    return meta
