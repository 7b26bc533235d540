"""Compile targets: a backend (qnn, aihub, litert) applied to one SoC from the table in socs.json.

Specs: `qnn:SM8650`, `aihub:SM8650` (or the AI Hub device name), `litert:qualcomm:SM8650`,
`litert:mediatek:MT6989`. SoCs also resolve by marketing name ("Snapdragon 8 Gen 3",
"Dimensity 9300", case-insensitive). Backends register with `register_backend`; a new SoC is a
row in socs.json, a new toolchain one module that registers itself.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from .registry import _BACKENDS, _DESCRIPTIONS, Target, register_backend, static_sources

__all__ = ["Target", "all_targets", "describe", "register_backend", "resolve", "socs", "static_sources"]

SOC_TABLE = Path(__file__).with_name("socs.json")


@lru_cache
def socs() -> tuple[dict, ...]:
    return tuple(json.loads(SOC_TABLE.read_text(encoding="utf-8"))["socs"])


def all_targets() -> list[Target]:
    _load_backends()
    return [
        Target(backend, soc)
        for backend, (vendors, _) in _BACKENDS.items()
        for soc in socs()
        if soc["vendor"] in vendors
    ]


def describe(backend: str) -> str:
    _load_backends()
    return _DESCRIPTIONS[backend]


def resolve(spec: str) -> Target:
    _load_backends()
    backends = sorted(_BACKENDS, key=len, reverse=True)  # "litert:mediatek" before "litert"
    backend = next((b for b in backends if spec.lower().startswith(b + ":")), None)
    if backend is None:
        raise InputError(
            f"unknown target {spec!r}: use <backend>:<SoC> with backend one of "
            f"{', '.join(sorted(_BACKENDS))} (see `mcad-export targets`)"
        )
    name = spec[len(backend) + 1 :].strip().lower()
    vendors = _BACKENDS[backend][0]
    if not name:
        known = [s["soc"] for s in socs() if s["vendor"] in vendors]
        raise InputError(
            f"target {spec!r} names no SoC: use {backend}:<SoC>, e.g. {backend}:{known[0]} (see `mcad-export targets`)"
        )
    for soc in socs():
        keys = {k for k in (soc["soc"].lower(), soc["name"].lower(), soc.get("aihub_device", "").lower()) if k}
        if name in keys:
            if soc["vendor"] not in vendors:
                raise InputError(
                    f"{soc['name']} ({soc['soc']}) is a {soc['vendor']} chip; {backend} serves "
                    f"{', '.join(vendors)} chips"
                )
            return Target(backend, soc)
    known = [s["soc"] for s in socs() if s["vendor"] in vendors]
    close = difflib.get_close_matches(name.upper(), known, n=1)
    raise InputError(
        f"unknown SoC {name!r} for {backend}"
        + (f" (did you mean {backend}:{close[0]}?)" if close else "")
        + f"; known: {', '.join(known)}. A new SoC is one row in {SOC_TABLE.name}"
    )


def _load_backends() -> None:
    # Registration happens on import; this list is the only place naming the backend modules.
    from . import aihub, litert_npu, qnn  # noqa: F401
