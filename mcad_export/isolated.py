"""Crash-prone toolchain steps run in a child process, so an abort becomes a clear error.

ai-edge-quantizer and the LiteRT runtime have been seen to SIGABRT the whole process (e.g. on
a -inf mask's ~1e36 quantization scale); nothing in this file's callers can catch that in-process.
Usage from code: `run_isolated(fn, {...}, {"x": array})`, where `fn` is marked with `run_in_child`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import McadError, first_line


class ToolCrashError(McadError):
    exit_code = 5


def raise_for_child(proc: subprocess.CompletedProcess, what: str) -> None:
    """A child that died or failed becomes one ToolCrashError line: the signal, or stderr's last line."""
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ToolCrashError(f"{what} crashed the process ({name}); the step ran isolated, nothing was written")
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["no message"]
        raise ToolCrashError(f"{what} failed: {first_line(tail[0], 300)}")


def run_child(command: list, what: str, timeout: int, env: dict) -> subprocess.CompletedProcess:
    """A child process whose time-out or failure is one ToolCrashError line (never a TimeoutExpired traceback)."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ToolCrashError(
            f"{what} did not finish within {timeout} s and was stopped; the step ran isolated, nothing was written"
        ) from None
    raise_for_child(proc, what)
    return proc


def run_isolated(fn, params: dict, arrays: dict, *, what: str, timeout: int = 1800) -> dict:
    if not getattr(fn, "_mcad_child", False):
        raise TypeError(f"{fn!r} is not marked with isolated.run_in_child")
    from .atomic import active_scratch

    command = f"{fn.__module__}:{fn.__name__}"
    # Inside the running stage's scratch folder (in the export) when it has one: one scratch location.
    with tempfile.TemporaryDirectory(dir=active_scratch()) as tmp:
        np.savez(Path(tmp) / "in.npz", **arrays)
        (Path(tmp) / "params.json").write_text(json.dumps(params))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        run_child([sys.executable, "-m", "mcad_export.isolated", command, tmp], what, timeout, env)
        with np.load(Path(tmp) / "out.npz") as out:
            return {k: out[k] for k in out.files}


def run_in_child(fn):
    """Marks `fn(params, arrays) -> dict of arrays` as runnable by `run_isolated`. The stage that owns a
    crash-prone step declares it next to its code; this module knows none of them."""
    fn._mcad_child = True
    return fn


if __name__ == "__main__":
    import importlib

    target, folder = sys.argv[1], Path(sys.argv[2])
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not getattr(fn, "_mcad_child", False):
        sys.exit(f"{target} is not a function marked with isolated.run_in_child")
    with np.load(folder / "in.npz") as data:
        inputs = {k: data[k] for k in data.files}
    outputs = fn(json.loads((folder / "params.json").read_text()), inputs) or {}
    np.savez(folder / "out.npz", **outputs)
