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
