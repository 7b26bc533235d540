"""`mcad-export run`: its arguments and what it runs, side by side."""

from __future__ import annotations

from pathlib import Path

from .. import render
from ..contract import LOGS_DIR
from ..defaults import DEFAULT_OUT
from ..options import (
    BundleOptions,
    IndexOptions,
    PipelineOptions,
    ShortQueryOptions,
)
from ..pipeline import Observer
from ..render import esc
from .common import (
    _add_bench_args,
    _add_compile_args,
    _add_gate_args,
    _add_index_kind,
    _add_quantize_args,
    _add_student_args,
    _status,
    bench_settings,
    compile_options,
    export_options,
    gate_from,
    quantize_options,
    student_options,
)

NAME = "run"
# The argument naming the folder this command writes (its lock is taken before any heavy import), or None.
WRITES = "out"


def add(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the whole pipeline, on the embedded student by default",
        description="Load the student, export both encoders (ONNX, TFLite) with parity checks, export "
        "the short-query text encoder, quantize every precision, run the fidelity gate, "
        "index the gallery, benchmark the query path against the budget and write the "
        "profiling report (reports/). --target adds compile, --app adds bundle.",
    )
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default: ./{DEFAULT_OUT})")
    _add_student_args(p)
    p.add_argument("--no-verify", action="store_true", help="report parity misses instead of failing")
    _add_quantize_args(p)
    _add_gate_args(p)
    p.add_argument("--images", type=Path, metavar="FOLDER", help="gallery to index (default: the held-out gallery)")
    _add_index_kind(p)
    _add_bench_args(p)
    _add_compile_args(p, required=False)
    p.add_argument(
        "--app",
        type=Path,
        metavar="APP",
        help="bundle the result into this Android demo (e.g. android_demo), for the first --target or the CPU",
    )
    p.add_argument(
        "--apk",
        action="store_true",
        help="with --app: then build, sign and verify the app's APK (DIR/apk/; see `mcad-export apk --help`)",
    )
    p.add_argument(
        "--force",
        nargs="?",
        const="all",
        action="append",
        metavar="STAGE",
        help="redo stages whose inputs are unchanged: all of them, or STAGE and every later one "
        "(export, short-query, quantize, verify, compile, index, bench, report, bundle); repeatable",
    )
    p.add_argument(
        "--verbose", action="store_true", help="stream the tools' own output instead of writing it to DIR/logs/"
    )


def pipeline_options(args) -> PipelineOptions:
    from ..defaults import STAGES
    from ..errors import InputError

    unknown = [f for f in args.force or () if f != "all" and f not in STAGES]
    if unknown:  # in the CLI's own words (PipelineOptions says it in the API's)
        raise InputError(f"--force {unknown[0]}: not a stage; use one of {', '.join(STAGES)} (or no name for all)")
    return PipelineOptions(
        out=args.out,
        student=student_options(args),
        export=export_options(args),
        short_query=ShortQueryOptions(),
        quantize=quantize_options(args),
        gate=gate_from(args),
        compile=compile_options(args),
        index=IndexOptions(images=args.images, kind=args.kind),
        bench=bench_settings(args),
        enforce_budget=args.enforce_budget,
        bundle=BundleOptions(app=args.app, target=args.target[0] if args.target else None, apk=args.apk),
        force=tuple(args.force or ()),
    )


class _ConsoleObserver(Observer):
    """`run` on the console: a spinner per stage, one line when it ends, then the stage's own table."""

    def __init__(self, console, out: Path):
        self.console, self.out, self._started = console, Path(out), {}

    def stage(self, name):
        import time

        self._started[name] = time.time()
        self._spinner = _status(self.console, f"{name} ...")
        return self._spinner

    def index_progress(self, done, total):
        self._spinner.update(f"index: embedding images {done:,}/{total:,}" if total else "index ...")

    def _done(self, name, note=""):
        import time

        seconds = time.time() - self._started.get(name, time.time())
        self.console.print(f"[green]done[/] {name} ({seconds:.0f} s){note}")

    def finished(self, name, value):
        log = self.out / LOGS_DIR / f"{name}.log"
        self._done(name, f"; tool output in {esc(log)}" if log.is_file() else "")
        shown = {
            "export": lambda: render.export_summary(self.console, value, self.out),
            "short-query": lambda: render.short_query(self.console, value, self.out),
            "quantize": lambda: render.quantized(self.console, value, self.out),
            "verify": lambda: render.fidelity(self.console, self.out),
            "compile": lambda: render.compiled(self.console, value, self.out),
            "index": lambda: render.index(self.console, value, self.out),
            "bench": lambda: render.bench(self.console, value, self.out),
            "report": lambda: render.report(self.console, value),
            "bundle": lambda: render.bundle(self.console, value),
            "apk": lambda: render.apk(self.console, value, self.out),
        }
        shown[name]()

    def skipped(self, name, why):
        self.console.print(f"[dim]skipped[/] {name}: {why} (--force {name} redoes it)")

    def rerun(self, name, why):
        self.console.print(f"[dim]redo[/] {name} and every later stage: {esc(why)}")

    def failed(self, name, error, log):
        from ..errors import FidelityGateError
        from ..logs import tail

        if isinstance(error, FidelityGateError):
            render.fidelity(self.console, self.out)
        lines = tail(log) if log else []
        if lines:
            self.console.print(f"[red]{name} failed[/]; last lines of its tool output ({esc(log)}):")
            for line in lines:
                self.console.print(f"  {esc(line)}", soft_wrap=True)


def run(args, console) -> int:
    from ..pipeline import run_pipeline

    result = run_pipeline(pipeline_options(args), _ConsoleObserver(console, args.out), verbose=args.verbose)
    card = result.manifest["student"].get("card", {}).get("student_fp32")
    if card:
        console.print(
            f"student held-out recall (fp32, from its card): t2i R@1 {card['t2i_r1']:.3f}, R@10 {card['t2i_r10']:.3f}"
        )
    if result.skipped:
        console.print(
            f"unchanged since the last run, skipped: {', '.join(result.skipped)}; ran: "
            f"{', '.join(result.ran) or 'nothing'} ({result.seconds:.0f} s)"
        )
    console.print(f"manifest: {args.out / 'manifest.json'}")
    return 0
