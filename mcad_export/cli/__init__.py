"""`mcad-export`: one module per subcommand (its arguments, the options it builds and what it runs, side by side);
this package only assembles the parser and dispatches. A new command is one module here and its name in COMMANDS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..errors import McadError
from ..render import esc
from . import (
    apk,
    bench,
    bundle,
    compile,
    export,
    golden,
    index,
    quantize,
    report,
    run,
    search,
    short_query,
    targets,
    train_student,
    verify,
)

# In the order `mcad-export --help` lists them.
COMMANDS = {
    module.NAME: module
    for module in (
        run,
        export,
        quantize,
        verify,
        index,
        search,
        bench,
        report,
        targets,
        compile,
        bundle,
        apk,
        short_query,
        golden,
        train_student,
    )
}
# The argument naming the folder each writing command writes: its lock is taken before any heavy import.
WRITERS = {name: module.WRITES for name, module in COMMANDS.items() if module.WRITES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcad-export",
        description="Deploy distilled CLIP-style students: export, verify and package image and text encoders.",
    )
    parser.add_argument("--version", action="version", version=f"mcad-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add(sub)
    return parser


def main(argv=None) -> int:
    from rich.console import Console

    from ..logs import detached_stream, silence_import_deprecations

    silence_import_deprecations()
    args = build_parser().parse_args(argv)
    # Our console writes to copies of stdout/stderr: `run` points fd 1 and 2 at each stage's log while it runs.
    err = Console(file=detached_stream(sys.stderr), highlight=False)
    console = Console(file=detached_stream(sys.stdout), highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        # Piped output (CI logs, files) gets a wide console so tables are never truncated.
        with _third_party_warnings_hidden(args), _writer_lock(args):
            return _dispatch(args, console)
    except McadError as e:
        err.print(f"[bold red]error:[/] {esc(' '.join(str(e).split()))}", soft_wrap=True)
        return e.exit_code
    except OSError as e:
        # A full disk or quota while a stage writes: staging is removed on the way out, so nothing half-written
        # is left; say so in one line instead of a traceback.
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        err.print(
            f"[bold red]error:[/] {esc(e.strerror or str(e))}{esc(where)}: free space (or choose another folder) and "
            "rerun; nothing half-written was kept",
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was kept")
        return 130


def _writer_lock(args):
    import contextlib

    from ..atomic import folder_lock

    name = WRITERS.get(args.command)
    folder = getattr(args, name, None) if name else None
    return folder_lock(Path(folder), args.command) if folder is not None else contextlib.nullcontext()


def _third_party_warnings_hidden(args):
    """Python warnings of torch, PIL, numpy, faiss, Ray ... say nothing about the user's model and break the
    one-`error:`-line rule: the CLI hides them unless the user asked for them (PYTHONWARNINGS, or --verbose)."""
    import contextlib
    import os
    import warnings

    if os.environ.get("PYTHONWARNINGS") or getattr(args, "verbose", False):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _dispatch(args, console) -> int:
    result = COMMANDS[args.command].run(args, console)
    return result if isinstance(result, int) else 0


__all__ = ["COMMANDS", "WRITERS", "build_parser", "main"]
