"""Crash-prone toolchain steps run in a child process, so an abort becomes a clear error.

ai-edge-quantizer and the LiteRT runtime have been seen to SIGABRT the whole process (e.g. on
a -inf mask's ~1e36 quantization scale); nothing in this file's callers can catch that in-process.
Usage from code: `run_isolated("tflite-embed", {...}, {"x": array})`.
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

from .errors import McadError


class ToolCrashError(McadError):
    exit_code = 5


def raise_for_child(proc: subprocess.CompletedProcess, what: str) -> None:
    """A child that died or failed becomes one ToolCrashError line: the signal, or stderr's last line."""
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ToolCrashError(f"{what} crashed the process ({name}); the step ran isolated, nothing was written")
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["no message"]
        raise ToolCrashError(f"{what} failed: {tail[0][:300]}")


def run_isolated(command: str, params: dict, arrays: dict, *, what: str, timeout: int = 1800) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", **arrays)
        (Path(tmp) / "params.json").write_text(json.dumps(params))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-m", "mcad_export.isolated", command, tmp],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        raise_for_child(proc, what)
        with np.load(Path(tmp) / "out.npz") as out:
            return {k: out[k] for k in out.files}


def _tflite_embed(params, arrays):
    from .runtime.encoders import tflite_embed

    return {"embeds": tflite_embed(params["model"], arrays["x"])}


def _tflite_quantize(params, arrays):
    from .quantize.tflite_recipes import quantize_tflite_in_process

    quantize_tflite_in_process(params, arrays)
    return {}


def _qnn_compile(params, arrays):
    from .compile.qnn import compile_context_in_process

    return compile_context_in_process(params, arrays)


def _qnn_simulate(params, arrays):
    from .compile.qnn import simulate_in_process

    return simulate_in_process(params, arrays)


def _litert_aot(params, arrays):
    from .compile.litert_npu import aot_compile_in_process

    return aot_compile_in_process(params, arrays)


COMMANDS = {
    "tflite-embed": _tflite_embed,
    "tflite-quantize": _tflite_quantize,
    "qnn-compile": _qnn_compile,
    "qnn-simulate": _qnn_simulate,
    "litert-aot": _litert_aot,
}

if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    with np.load(folder / "in.npz") as data:
        inputs = {k: data[k] for k in data.files}
    outputs = COMMANDS[command](json.loads((folder / "params.json").read_text()), inputs)
    np.savez(folder / "out.npz", **outputs)
