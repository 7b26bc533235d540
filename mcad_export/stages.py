"""Each stage as a function of (folder, typed options, progress): the stage entry functions, called with the
options' values. `pipeline.run_pipeline` chains them; every CLI subcommand calls the same one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .options import (
    BenchOptions,
    BundleOptions,
    CompileOptions,
    ExportOptions,
    Gate,
    IndexOptions,
    QuantizeOptions,
    ShortQueryOptions,
    StudentOptions,
)

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def export(out: Path, student: StudentOptions, options: ExportOptions, say: Say = _quiet) -> dict:
    from .atomic import ensure_writable
    from .export import export_student
    from .students import load_student

    ensure_writable(out)  # fail before minutes of work, not after
    say("loading the student")
    loaded = load_student(student.spec, student.weights, random_init=student.random_init)
    return export_student(
        loaded, out, verify=options.verify, samples=options.samples, tflite=options.tflite, progress=say
    )


class ShortQuerySkipped(Exception):
    """`run` goes on without a short-query encoder (the student cannot have one); the reason is the message."""


def short_query(out: Path, options: ShortQueryOptions, say: Say = _quiet) -> dict:
    from .errors import ParityError, UnsupportedStudentError
    from .export.short_query import export_short_query

    buckets = None if options.buckets is None else tuple(b for b in options.buckets if b > 0)
    try:
        return export_short_query(out, buckets=buckets, progress=say)
    except (UnsupportedStudentError, ParityError) as e:
        if options.required:
            raise
        raise ShortQuerySkipped(str(e)) from e


def quantize(out: Path, options: QuantizeOptions, gate: Gate, say: Say = _quiet) -> list[dict]:
    from .quantize import quantize_artifacts
    from .quantize.onnx_recipes import DEFAULT_PRECISIONS

    return quantize_artifacts(
        out,
        tuple(options.precisions or DEFAULT_PRECISIONS),
        calib_images=options.calib_images,
        calib_captions=options.calib_captions,
        num_calib=options.num_calib,
        allow_small=options.allow_small,
        auto=options.auto,
        gate=gate,
        buckets=options.buckets,
        formats=options.formats,
        progress=say,
    )


def verify(out: Path, gate: Gate, say: Say = _quiet, only: list[str] | None = None) -> list[dict]:
    """Gates every artifact, or with `only` (manifest paths or names) just those."""
    from .quantize.verify import verify_artifacts

    return verify_artifacts(out, gate, progress=say, only=only or None)


def compile(out: Path, options: CompileOptions, gate: Gate, say: Say = _quiet) -> list[dict]:  # noqa: A001
    from .compile import compile_targets

    return compile_targets(
        out,
        list(options.targets),
        allow_cpu_fallback=options.allow_cpu_fallback,
        sim_samples=options.sim_samples,
        num_calib=options.num_calib,
        allow_small_calibration=options.allow_small,
        gate=gate,
        progress=say,
        backend_options=options.backend_options(),
    )


def index(out: Path, options: IndexOptions, progress: Callable[[int, int | None], None] | None = None) -> dict:
    from .runtime.gallery import build_gallery_index

    return build_gallery_index(
        out,
        options.images,
        kind=options.kind,
        artifact=options.artifact,
        batch=options.batch,
        progress=progress,
        engine=options.engine,
        engine_options=options.engine_options(),
    )


def bench(out: Path, options: BenchOptions, say: Say = _quiet) -> dict:
    from .bench import bench as run_bench

    return run_bench(out, options, progress=say)


def report(out: Path, device_bench=None) -> dict:
    from .report import write_report

    return write_report(out, device_bench)


def apk(out: Path, options: BundleOptions, say: Say = _quiet) -> dict:
    from .apk import build_apk

    return build_apk(out, options.app, target=options.target, allow_ungated=options.allow_ungated, progress=say)


def bundle(out: Path, options: BundleOptions, say: Say = _quiet) -> dict:
    from .bundle import bundle as write_bundle

    return write_bundle(
        out,
        options.app,
        target=options.target,
        with_image_encoder=options.with_image_encoder,
        budget_mb=options.budget_mb,
        allow_over_budget=options.allow_over_budget,
        allow_ungated=options.allow_ungated,
        progress=say,
    )
