"""Typed options of every stage: the one place their defaults are written.

The CLI builds these from its arguments (its defaults come from here), the pipeline (`pipeline.run_pipeline`)
and the benchmarks take them directly. Thresholds are fractions everywhere in code; only the CLI's
`--max-r1-drop` speaks recall points, and converts once (`Gate.from_points`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import defaults
from .bench.common import DEFAULT_GALLERY_SIZE, DEFAULT_SWEEP_SIZES, Settings
from .defaults import AIHUB_TIMEOUT_S, BUDGET_MB, BUDGET_MS, INDEX_BATCH, NUM_CALIB, SIM_SAMPLES
from .quantize.fidelity import DEFAULT_GATE, Gate

DEFAULT_OUT = Path(defaults.DEFAULT_OUT)

# The bench stage's options are its Settings (bench/common.py), re-exported under the name the API uses.
BenchOptions = Settings


def checked(options) -> None:
    """Each field of an options dataclass against its annotation, when it is built (not after export has run):
    a wrong type is one line naming the field, what it got and what it takes. A str is accepted for a Path (and
    converted), a list for a tuple; a bare str where a tuple of names goes is refused, not split into letters."""
    from .errors import InputError

    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        fits, converted = _fits(value, hints[f.name])
        if not fits:
            raise InputError(
                f"{type(options).__name__}({f.name}={value!r}): got {type(value).__name__}, but {f.name} takes "
                f"{_describe(hints[f.name])}"
            )
        if converted is not value:
            object.__setattr__(options, f.name, converted)


def _fits(value, kind) -> tuple[bool, typing.Any]:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            fits, converted = _fits(value, option)
            if fits:
                return True, converted
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is Path:
        return (True, Path(value)) if isinstance(value, str | Path) and str(value) else (False, value)
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool), value
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return False, value
        item = typing.get_args(kind)[0]
        converted = []
        for v in value:
            fits, c = _fits(v, item)
            if not fits:
                return False, value
            converted.append(c)
        return True, tuple(converted) if isinstance(value, list) or converted != list(value) else value
    if isinstance(kind, type):
        return isinstance(value, kind), value
    return True, value


def _describe(kind) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"a tuple of {_describe(typing.get_args(kind)[0])} (e.g. ('a',), not 'a')"
    return {type(None): "None", Path: "a path", str: "a str", int: "a whole number", float: "a number"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


class _Checked:
    def __post_init__(self):
        checked(self)


@dataclass(frozen=True)
class StudentOptions(_Checked):
    spec: str | None = None  # None: the embedded default student
    weights: Path | None = None
    random_init: bool = False


@dataclass(frozen=True)
class ExportOptions(_Checked):
    tflite: bool = True
    verify: bool = True  # False: keep files that miss parity (the miss is still reported)
    samples: int | None = None  # None: the student's evaluation set


@dataclass(frozen=True)
class ShortQueryOptions(_Checked):
    buckets: tuple[int, ...] | None = None  # None: contract.LENGTH_BUCKETS; () for none
    required: bool = False  # `run`: a student that cannot have one is skipped with a note


@dataclass(frozen=True)
class QuantizeOptions:
    precisions: tuple[str, ...] | None = None  # None: onnx_recipes.DEFAULT_PRECISIONS
    calib_images: Path | None = None
    calib_captions: Path | None = None
    num_calib: int = NUM_CALIB
    allow_small: bool = False
    auto: bool = True
    buckets: bool = False  # also the length buckets' integer CPU variants (for runtimes without dynamic shapes)
    formats: tuple[str, ...] = ("onnx", "tflite")  # which fp32 encoders' variants to make

    def __post_init__(self):
        checked(self)
        from .contract import Precision
        from .errors import InputError

        # fp32 is the export itself; w16a16 is compile qnn's own weight step
        known = [p.value for p in Precision if p not in (Precision.FP32, Precision.W16A16)]
        unknown = [p for p in self.precisions or () if p not in known]
        if unknown:
            raise InputError(f"QuantizeOptions: unknown precision {unknown[0]!r}; use some of {', '.join(known)}")
        if not self.formats or set(self.formats) - {"onnx", "tflite"}:
            raise InputError(f"QuantizeOptions: formats {self.formats!r}; use onnx, tflite or both")


@dataclass(frozen=True)
class CompileOptions(_Checked):
    targets: tuple[str, ...] = ()
    allow_cpu_fallback: bool = False
    sim_samples: int = SIM_SAMPLES
    num_calib: int = NUM_CALIB
    allow_small: bool = False
    aihub_runtime: str = "tflite"
    aihub_quantize: bool = False
    aihub_timeout_s: float = AIHUB_TIMEOUT_S

    def backend_options(self) -> dict:
        return {
            "aihub_runtime": self.aihub_runtime,
            "aihub_quantize": self.aihub_quantize,
            "aihub_timeout_s": self.aihub_timeout_s,
        }


@dataclass(frozen=True)
class IndexOptions(_Checked):
    images: Path | None = None  # None: the student's held-out gallery
    kind: str = "flat"
    artifact: str | None = None  # None: the fp32 ONNX image encoder
    batch: int = INDEX_BATCH
    engine: str = "local"  # or "ray" (runtime/gallery_ray.py)
    address: str | None = None  # ray: an existing cluster (None: a local one started for the job)
    workers: int = 1  # ray: actors, each with one ONNX Runtime session
    cpus_per_worker: int = 1  # ray: each actor's CPU share = its intra_op_num_threads
    shard_size: int = 128  # ray: images per shard (the unit written, retried and resumed)

    def engine_options(self) -> dict:
        return {
            "address": self.address,
            "workers": self.workers,
            "cpus_per_worker": self.cpus_per_worker,
            "shard_size": self.shard_size,
        }


@dataclass(frozen=True)
class BundleOptions(_Checked):
    app: Path | None = None  # None: no bundle stage
    target: str | None = None  # None: the CPU (bench's choice)
    with_image_encoder: bool = False
    budget_mb: float = BUDGET_MB
    allow_over_budget: bool = False
    # Device-only artifacts (AI Hub, LiteRT NPU) have no host runner for the gate: shipped only when allowed, and
    # bundle.json says the gate never ran on them (deployable.py).
    allow_ungated: bool = False
    apk: bool = False  # `run --apk`: then build, sign and verify the app's APK (mcad_export/apk/)


@dataclass
class PipelineOptions:
    out: Path = DEFAULT_OUT
    student: StudentOptions = field(default_factory=StudentOptions)
    export: ExportOptions = field(default_factory=ExportOptions)
    short_query: ShortQueryOptions = field(default_factory=ShortQueryOptions)
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    gate: Gate = DEFAULT_GATE
    compile: CompileOptions = field(default_factory=CompileOptions)
    index: IndexOptions = field(default_factory=IndexOptions)
    bench: Settings = field(default_factory=Settings)
    enforce_budget: bool = False
    bundle: BundleOptions = field(default_factory=BundleOptions)
    # Stages to redo although their inputs are unchanged ("all", or a stage name: it and every later stage).
    force: tuple[str, ...] = ()

    def __post_init__(self):
        checked(self)
        from .defaults import STAGES
        from .errors import InputError

        unknown = [f for f in self.force if f != "all" and f not in STAGES]
        if unknown:
            raise InputError(
                f"PipelineOptions(force=...): {unknown[0]!r} is not a stage; use some of {', '.join(STAGES)} or 'all'"
            )


__all__ = [
    "BUDGET_MB",
    "BUDGET_MS",
    "DEFAULT_GALLERY_SIZE",
    "DEFAULT_GATE",
    "DEFAULT_OUT",
    "DEFAULT_SWEEP_SIZES",
    "NUM_CALIB",
    "SIM_SAMPLES",
    "BenchOptions",
    "BundleOptions",
    "CompileOptions",
    "ExportOptions",
    "Gate",
    "IndexOptions",
    "PipelineOptions",
    "QuantizeOptions",
    "ShortQueryOptions",
    "StudentOptions",
]
