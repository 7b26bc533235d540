"""Typed records: a manifest artifact, a fidelity.json entry and bench.json, as dataclasses with the contract's enums.

The JSON on disk is what the stages always wrote: a record keeps the key order it was read or built with, fields
that were absent stay absent, and enums are written as their strings. What the types add is the schema in one
place, checked at both ends: `dump_manifest`, `verify` and `bench` write through them, `read_manifest` and the
readers of the reports parse through them, so a field no stage writes, a missing required field, or a precision,
format, encoder or runtime outside the contract is refused in one line instead of being carried along or skipped.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .contract import BENCH_REPORT, DEVICE_RUNTIME_PREFIXES, FIDELITY_REPORT, Encoder, Format, Precision, Runtime
from .errors import InputError

MEASURED_ON_SIMULATOR = "qnn-htp-sim"  # what fidelity.json calls a QNN artifact run on the x86 HTP simulator


class _Absent:
    """The default of an optional field the record does not carry (None is a value some records hold)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
R = TypeVar("R", bound="Record")


def _known(enum: type[Enum]) -> str:
    return ", ".join(str(e.value) for e in enum)


@dataclass(kw_only=True)
class Record:
    ENUMS: ClassVar[dict[str, type[Enum]]] = {}
    OTHER_RUNTIMES: ClassVar[tuple[str, ...]] = ()  # runtime names besides Runtime and the device-only ones
    _order: list[str] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def parse(cls: type[R], data: Any, where: str, fix: str) -> R:
        """`data` (a JSON object) as this record, or one InputError line naming `where` and saying `fix`."""
        if not isinstance(data, dict):
            raise InputError(f"{where} is not a JSON object; {fix}")
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        unknown = [k for k in data if k not in names]
        if unknown:
            raise InputError(
                f"{where} has {'fields' if len(unknown) > 1 else 'a field'} no mcad-export stage writes "
                f"({', '.join(map(repr, unknown))}); {fix}"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)}; {fix}")
        values = {k: cls._typed(k, v, where, fix) for k, v in data.items()}
        record = cls(**values)
        record._order = list(data)
        return record

    @classmethod
    def _typed(cls, key: str, value: Any, where: str, fix: str) -> Any:
        if key == "runtime":
            return _runtime(value, where, fix, cls.OTHER_RUNTIMES)
        enum = cls.ENUMS.get(key)
        if enum is None:
            return value
        try:
            return enum(value)
        except ValueError:
            raise InputError(
                f"{where}.{key} is {value!r}, which mcad-export does not know (one of {_known(enum)}); {fix}"
            ) from None

    def to_json(self) -> dict:
        present = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_") and getattr(self, f.name) is not ABSENT
        }
        order = [k for k in self._order if k in present] + [k for k in present if k not in self._order]
        return {k: present[k].value if isinstance(present[k], Enum) else present[k] for k in order}


def _runtime(value: Any, where: str, fix: str, also: tuple[str, ...] = ()) -> Any:
    """A host runtime (the enum), or a device-only one named per toolchain (aihub-*, litert-npu-*), kept as text."""
    if isinstance(value, str) and (value.startswith(DEVICE_RUNTIME_PREFIXES) or value in also):
        return value
    try:
        return Runtime(value)
    except ValueError:
        raise InputError(
            f"{where}.runtime is {value!r}, which mcad-export does not know (one of {_known(Runtime)}, "
            f"{', '.join(p + '*' for p in DEVICE_RUNTIME_PREFIXES)}); {fix}"
        ) from None


@dataclass(kw_only=True)
class ArtifactRecord(Record):
    """One model file in manifest.json `artifacts` (docs/contract.md lists what each stage adds)."""

    ENUMS: ClassVar[dict[str, type[Enum]]] = {"encoder": Encoder, "format": Format, "precision": Precision}

    name: str
    encoder: Encoder
    format: Format
    precision: Precision
    path: str
    runtime: Any = ABSENT  # Runtime, or a device-only runtime's name
    inputs: list = ABSENT
    outputs: list = ABSENT
    sha256: str = ABSENT
    size_bytes: int = ABSENT
    # export
    signature: str = ABSENT
    converter: str = ABSENT
    simplify: dict = ABSENT
    parity: dict = ABSENT
    # short-query, buckets
    dynamic_length: dict = ABSENT
    length_bucket: dict = ABSENT
    # quantize
    external_data: dict = ABSENT
    source: str = ABSENT
    recipe: dict = ABSENT
    size_ratio_vs_fp32: float = ABSENT
    tuning: dict = ABSENT
    layer_damage_top: list = ABSENT
    # compile
    target: str = ABSENT
    soc: dict = ABSENT
    files: dict = ABSENT
    host_gather: dict = ABSENT  # a text graph that starts at the embeddings (compile/host_gather.py)
    ops: dict = ABSENT
    calibration: str = ABSENT
    verify_samples: int = ABSENT
    quantized_by: str = ABSENT
    device_profile: dict = ABSENT
    aihub: dict = ABSENT
    partition_stats: str = ABSENT
    sdk: dict = ABSENT


@dataclass(kw_only=True)
class FidelityRecord(Record):
    """One artifact's entry in reports/fidelity.json: the gate's numbers, or why it was skipped."""

    ENUMS: ClassVar[dict[str, type[Enum]]] = {"encoder": Encoder, "precision": Precision}
    OTHER_RUNTIMES: ClassVar[tuple[str, ...]] = (MEASURED_ON_SIMULATOR,)

    artifact: str
    name: str
    encoder: Encoder
    runtime: Any  # Runtime, qnn-htp-sim, or a device-only runtime's name (skipped)
    precision: Precision
    size_bytes: int
    passed: bool | None
    target: str = ABSENT
    skipped: str = ABSENT
    cosine_mean: float = ABSENT
    cosine_min: float = ABSENT
    cosine_p1: float = ABSENT  # 1st percentile of the per-sample cosine
    r1_paired: dict = ABSENT  # fidelity.r1_paired_test: lost/gained captions, p-value, detectable drop
    per_language: dict = ABSENT  # fidelity.per_language: an evaluation set in several caption languages
    sha256: str = ABSENT  # the artifact file's digest when it was gated: a record of other bytes deploys nothing
    recall_at_1: float = ABSENT
    recall_at_5: float = ABSENT
    recall_at_10: float = ABSENT
    recall_at_1_fp32: float = ABSENT
    recall_at_5_fp32: float = ABSENT
    recall_at_10_fp32: float = ABSENT
    i2t_recall_at_1: float = ABSENT
    i2t_recall_at_5: float = ABSENT
    i2t_recall_at_10: float = ABSENT
    i2t_recall_at_1_fp32: float = ABSENT
    top10_overlap: float = ABSENT
    pairwise_cosine_mean_fp32: dict = ABSENT
    fp32_ranking_at_chance: bool = ABSENT
    degenerate: bool = ABSENT
    degenerate_because: list = ABSENT
    samples: int = ABSENT
    recall_meaningful: bool = ABSENT
    gate: dict = ABSENT
    misses: list = ABSENT


@dataclass(kw_only=True)
class BenchReport(Record):
    """reports/bench.json (the numbers behind the report's verdict; docs/search-and-benchmarks.md)."""

    student: str
    threads: int
    gallery_size: int
    query_latency_ms: dict
    peak_rss_mb: float
    artifacts: dict
    budget: dict
    random_init: bool = ABSENT
    gallery: dict = ABSENT
    query_latency_samples_ms: list = ABSENT
    query_stages_p50_ms: dict = ABSENT
    query_tokens_mean: float = ABSENT
    memory_breakdown_mb: dict = ABSENT
    query_process_imports_torch: bool = ABSENT
    by_threads: dict = ABSENT
    encoders: list = ABSENT
    baseline: dict | None = ABSENT
    speedup_vs_baseline: float | None = ABSENT
    physical_limit: dict = ABSENT
    index_sweep: Any = ABSENT
    tools: dict = ABSENT
    seconds: float = ABSENT


def fidelity_records(data: Any, where: str, fix: str) -> list[FidelityRecord]:
    if not isinstance(data, list):
        raise InputError(f"{where} is not a list of records; {fix}")
    return [FidelityRecord.parse(r, f"{where}[{i}]", fix) for i, r in enumerate(data)]


_REPORT_FIX = "rerun the stage that wrote it (mcad-export verify / bench DIR)"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); {_REPORT_FIX}") from None


def read_fidelity(root: Path) -> list[dict]:
    """reports/fidelity.json, every record checked; [] when verify has not run."""
    path = Path(root) / FIDELITY_REPORT
    if not path.is_file():
        return []
    return [r.to_json() for r in fidelity_records(_load(path), str(path), _REPORT_FIX)]


def fidelity_json(records: list[dict], root: Path) -> str:
    """What verify writes: each record through FidelityRecord, so no stage can write a field the schema lacks."""
    where = str(Path(root) / FIDELITY_REPORT)
    return (
        json.dumps([r.to_json() for r in fidelity_records(records, where, "a bug: please report it")], indent=2) + "\n"
    )


def read_bench(root: Path) -> dict | None:
    """reports/bench.json, checked; None when bench has not run."""
    path = Path(root) / BENCH_REPORT
    if not path.is_file():
        return None
    return BenchReport.parse(_load(path), str(path), _REPORT_FIX).to_json()


def bench_json(report: dict, root: Path) -> str:
    return (
        json.dumps(
            BenchReport.parse(report, str(Path(root) / BENCH_REPORT), "a bug: please report it").to_json(), indent=1
        )
        + "\n"
    )
