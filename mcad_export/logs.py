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
