"""The compile-backend registry: backend id -> (vendors it serves, compile function), and the Target type.

Backend modules import `register_backend` from here; `targets` imports them to trigger registration. Keeping the
registry apart from `targets` means neither imports the other back (no import cycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# backend id -> (vendors it serves, compile function(root, manifest, target, options, say) -> records)
_BACKENDS: dict[str, tuple[tuple[str, ...], Callable]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_backend(backend: str, vendors: tuple[str, ...], description: str):
    def decorate(fn):
        _BACKENDS[backend] = (vendors, fn)
        _DESCRIPTIONS[backend] = description
        return fn

    return decorate


@dataclass(frozen=True)
class Target:
    backend: str  # qnn | aihub | litert:qualcomm | litert:mediatek
    soc: dict  # the socs.json row

    @property
    def id(self) -> str:
        return f"{self.backend}:{self.soc['soc']}"

    @property
    def folder(self) -> str:
        """Where its artifacts go under compiled/: e.g. qnn-SM8650, litert-mediatek-MT6989."""
        return self.id.replace(":", "-")

    def compile_fn(self) -> Callable:
        from ..usage import note

        note("backend", self.backend)
        return _BACKENDS[self.backend][1]


def static_sources(manifest: dict) -> list[tuple[dict, str, int | None]]:
    """What a static-shape NPU target compiles, as (source record with `encoder`, file stem, bucket tokens or None):
    the contract's fp32 ONNX encoders (made batch 1 by the backend) and the text encoder's length buckets
    (export/short_query.py), which static graphs need so a short query does not pay for the whole context."""
    contract = [
        (a, f"{a['encoder']}_encoder", None)
        for a in manifest["artifacts"]
        if a["format"] == "onnx" and a["precision"] == "fp32" and not a.get("dynamic_length")
    ]
    buckets = [
        ({**b, "encoder": "text"}, f"text_encoder.len{b['tokens']}", b["tokens"])
        for b in manifest["text"].get("length_buckets", [])
    ]
    return contract + buckets
