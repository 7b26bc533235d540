"""`mcad-export search`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render

NAME = "search"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = None


def add(sub) -> None:
    p = sub.add_parser(
        "search",
        help="text -> ranked gallery images (the torch-free query path)",
        description="Tokenizes the text, runs the text encoder the manifest deploys (or --artifact) "
        "and prints the top-k gallery images with their cosine scores.",
    )
    p.add_argument("dir", type=Path, help="an export folder with an index (mcad-export index)")
    p.add_argument("text", help='the query, e.g. "a red circle above a blue square"')
    p.add_argument("-k", type=int, default=5, help="how many results (default 5)")
    p.add_argument("--artifact", metavar="PATH", help="text-encoder artifact (default: the deployed one)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")


def run(args, console) -> int:
    from ..runtime.search import TextSearch, check_query

    check_query(args.text, args.k)  # before seconds of loading
    if args.threads < 1:
        from ..errors import InputError

        raise InputError(f"--threads must be a positive thread count, got {args.threads}")
    searcher = TextSearch(args.dir, args.artifact, threads=args.threads)
    hits, times = searcher.timed_search(args.text, args.k)
    render.search(console, args.text, searcher, hits, times)
    return 0
