"""device-bench.json, the app's own measurement on a phone (`--ez bench true`), checked before the report shows it.

The file comes back from a device over adb: untrusted input like any other. Its shape is checked field by field
(one `error:` line naming the first problem), then `report --device-bench FILE` keeps a copy in
reports/device-bench.json so every later report shows it beside the host bench and AI Hub's profiles.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError

FORMAT = "mcad-device-bench/1"  # written by android_demo's DeviceBench.java
STAGES = ("tokenize", "encode", "search", "total")
_FIX = "take device-bench.json from the app's benchmark mode (adb shell am start ... --ez bench true)"


def _number(value, where: str, path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"{path}: {where} is {value!r}, not a non-negative number; {_FIX}")
    return float(value)


def _text(value, where: str, path) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InputError(f"{path}: {where} is {value!r}, not a short text; {_FIX}")
    return value


def _whole(value, where: str, path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{path}: {where} is {value!r}, not a positive whole number; {_FIX}")
    return value


def check(data, path) -> dict:
    """The record when it has every field DeviceBench.java writes, of the right kind (else one InputError)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path} has format {found!r}, expected {FORMAT!r}; {_FIX}")
    device = data.get("device")
    if not isinstance(device, dict):
        raise InputError(f"{path}: device is missing; {_FIX}")
    for key in ("manufacturer", "model", "soc", "abi"):
        _text(device.get(key), f"device.{key}", path)
    _whole(device.get("sdk"), "device.sdk", path)
    for key in ("student", "runtime", "accelerator"):
        _text(data.get(key), key, path)
    for key in ("queries", "repeats", "gallery_size"):
        _whole(data.get(key), key, path)
    latency = data.get("latency_ms")
    if not isinstance(latency, dict):
        raise InputError(f"{path}: latency_ms is missing; {_FIX}")
    for stage in STAGES:
        stats = latency.get(stage)
        if not isinstance(stats, dict):
            raise InputError(f"{path}: latency_ms.{stage} is missing; {_FIX}")
        p50, p90, p99 = (_number(stats.get(p), f"latency_ms.{stage}.{p}", path) for p in ("p50", "p90", "p99"))
        if not p50 <= p90 <= p99:
            raise InputError(f"{path}: latency_ms.{stage} percentiles are not ordered (p50 <= p90 <= p99); {_FIX}")
    memory = data.get("memory_mb")
    if not isinstance(memory, dict):
        raise InputError(f"{path}: memory_mb is missing; {_FIX}")
    for key in ("vm_rss", "vm_hwm"):
        _number(memory.get(key), f"memory_mb.{key}", path)
    return data


def read(path) -> dict:
    from ..manifest import read_json_bounded

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--device-bench {path} is not a file; {_FIX}")
    return check(read_json_bounded(path, 1 << 20, _FIX), path)


def verdict(record: dict, budget_ms: float, budget_mb: float) -> dict:
    p50, peak = record["latency_ms"]["total"]["p50"], record["memory_mb"]["vm_hwm"]
    return {
        "latency_passed": p50 <= budget_ms,
        "memory_passed": peak <= budget_mb,
        "summary": f"{'PASS' if p50 <= budget_ms and peak <= budget_mb else 'MISS'} on "
        f"{record['device']['manufacturer']} {record['device']['model']} ({record['device']['soc']}, "
        f"{record['device']['abi']}): query p50 {p50:.2f} ms (budget {budget_ms:g}), VmHWM {peak:.1f} MB "
        f"(budget {budget_mb:g}), {record['runtime']} on {record['accelerator']}",
    }
