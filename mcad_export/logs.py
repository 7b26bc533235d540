"""Logging helpers shared by stages."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def quiet_root_logger(level=logging.ERROR):
    """Upstream libraries (open_clip, onnxruntime.quantization) log advice through the root logger;
    inside our stages that advice is either handled or irrelevant, so only errors get through."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(before, level))
    try:
        yield
    finally:
        root.setLevel(before)


def silence_import_deprecations() -> None:
    """torchao 0.18 (pulled in by litert-torch, imported by transformers 5) registers Enum pytree constants, and
    torch 2.14 logs a deprecation warning per Enum to stderr on import (torch.utils._pytree register_constant).
    It says nothing about the user's model and breaks the one-line error contract, so that logger only passes
    errors. Remove once torchao stops calling register_constant on Enums."""
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


@contextlib.contextmanager
def root_logger_preserved():
    """Workaround: onnxruntime 1.32's quantization/matmul_nbits_quantizer.py calls logging.basicConfig(level=INFO)
    at import, which would print every library's INFO records for the rest of the process. Import it inside this
    block: the root logger's level and handlers are put back as they were."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def detached_stream(stream):
    """A writer on a copy of `stream`'s file descriptor, so our own console output keeps its destination while
    `tool_output_to` points fd 1 / 2 at a log. Streams without a descriptor (pytest's capsys) are used as they
    are: no fd-level redirect can reach them."""
    import io
    import os

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return stream
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8")


@contextlib.contextmanager
def tool_output_to(log_path, enabled: bool = True):
    """Sends everything written to fd 1 and fd 2 (print, absl, C++ libraries, child processes) to `log_path`
    while the block runs. Yields the path."""
    import os
    import sys

    if not enabled:
        yield None
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed below, after the descriptors are restored
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield log_path
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()


def tail(path, lines: int = 12) -> list[str]:
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
