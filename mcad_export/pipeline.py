"""The whole pipeline as one typed call: `run_pipeline(PipelineOptions(...)) -> PipelineResult`.

Stages in order: export, short-query, quantize, verify, [compile], index, bench, report, [bundle]. Each stage's
third-party output (litert-torch, absl, ONNX Runtime, child processes) goes to DIR/logs/<stage>.log; an
`Observer` hears what happened (the CLI renders tables from it). A rerun on an unchanged folder skips the stages
whose inputs did not change (resume.py); `options.force` redoes a stage and everything after it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import resume, stages
from .contract import LOGS_DIR, MANIFEST
from .defaults import STAGES  # noqa: E402  (the order of `run`; options.py checks --force names against it)
from .options import PipelineOptions
from .records import read_bench, read_fidelity


class Observer:
    """How a run reports. The default says nothing; the CLI's draws progress and tables."""

    def stage(self, name: str):
        """A context manager around one stage, yielding its `say(message)` progress callback."""
        return contextlib.nullcontext(lambda message: None)

    def index_progress(self, done: int, total: int | None) -> None:
        pass

    def finished(self, name: str, result) -> None:
        pass

    def skipped(self, name: str, why: str) -> None:
        pass

    def rerun(self, name: str, why: str) -> None:
        """The first stage a resumed run redoes, and why (the later ones follow from it)."""

    def failed(self, name: str, error: BaseException, log: Path | None) -> None:
        pass


@dataclass
class PipelineResult:
    out: Path
    manifest: dict
    short_query: dict | None = None
    quantized: list[dict] = field(default_factory=list)
    fidelity: list[dict] = field(default_factory=list)
    compiled: list[dict] = field(default_factory=list)
    index: dict | None = None
    bench: dict | None = None
    report: dict | None = None
    bundle: dict | None = None
    apk: dict | None = None
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def preflight(options: PipelineOptions) -> None:
    """Every option `run` will use, checked before the first stage (a typo must not cost minutes of export)."""
    from .atomic import ensure_writable
    from .errors import InputError
    from .quantize.calibration import check_calibration_options
    from .runtime.images import require_folder

    ensure_writable(options.out)
    if options.compile.targets:
        from .compile.targets import resolve

        for spec in options.compile.targets:
            resolve(spec)
    app = options.bundle.app
    if app is not None and not (Path(app) / "app" / "src" / "main").is_dir():
        raise InputError(f"--app {app} is not the Android demo (no app/src/main); use --app android_demo from the repo")
    if options.bundle.apk:
        if app is None:
            raise InputError("--apk builds the app --app names: add --app android_demo")
        from .apk.toolchain import find_toolchain

        find_toolchain()  # a missing toolchain piece fails now, not after minutes of export
    if options.index.images is not None:
        require_folder(options.index.images)
    q = options.quantize
    check_calibration_options(q.calib_images, q.calib_captions, q.num_calib)
    options.bench.check_values()
    if options.compile.sim_samples < 1:
        raise InputError(f"--sim-samples must be positive, got {options.compile.sim_samples}")


def bench_options(o: PipelineOptions):
    """`--apk` builds offline with ONNX Runtime only (apk/build.py), so the text encoder it ships is benched among
    ONNX Runtime's; otherwise a faster LiteRT encoder would win the bench and the APK step would refuse it."""
    if o.bundle.apk and not o.bench.artifact and not o.bench.runtimes:
        import dataclasses

        return dataclasses.replace(o.bench, runtimes=("onnxruntime",))
    return o.bench


def wanted_stages(options: PipelineOptions) -> list[str]:
    skip = set()
    if not options.compile.targets:
        skip.add("compile")
    if options.bundle.app is None:
        skip.add("bundle")
    if options.bundle.app is None or not options.bundle.apk:
        skip.add("apk")
    return [s for s in STAGES if s not in skip]


def _stage_inputs(name: str, options: PipelineOptions):
    """(options, files outside the folder) that decide a stage's output, for its digest."""
    o = options
    if name == "export":
        spec = o.student.spec or ""
        source = spec.partition(":")[2] if spec.partition(":")[0] in ("hf", "dual", "open_clip") else None
        external = [resume.fingerprint(o.student.weights)]
        if source and (source.endswith(".json") or Path(source).is_dir()):
            external.append(resume.fingerprint(source))
        if not spec or spec.startswith("embedded"):
            from .students.embedded import ASSET_DIR

            external.append(resume.fingerprint(ASSET_DIR))
        return (o.student, o.export), external
    if name == "short-query":
        return o.short_query, []
    if name == "quantize":
        return (o.quantize, o.gate), [
            resume.fingerprint(o.quantize.calib_images),
            resume.fingerprint(o.quantize.calib_captions),
        ]
    if name == "verify":
        return o.gate, []
    if name == "compile":
        return (o.compile, o.gate), []
    if name == "index":
        return o.index, [resume.fingerprint(o.index.images)]
    if name == "bench":
        return (bench_options(o), o.enforce_budget), []
    if name == "bundle":
        # Its output is outside the folder (the app's assets): checked after the fact (outside_outputs), not digested
        # here, where the stage's own first run would change its input.
        return o.bundle, []
    if name == "apk":
        # The app's sources are what the APK is built from (its assets are bundle's output, checked there).
        main = Path(o.bundle.app) / "app" / "src"
        return o.bundle, [resume.fingerprint(main / "main" / "java"), resume.fingerprint(main / "main" / "res")]
    return None, []


def outside_outputs(name: str, options: PipelineOptions):
    """The fingerprint of what a stage writes outside the folder (a deleted or edited asset makes it run again)."""
    if name == "bundle" and options.bundle.app:
        return resume.fingerprint(Path(options.bundle.app) / "app" / "src" / "main" / "assets")
    return None


def _call(name: str, options: PipelineOptions, observer: Observer, say):
    out, o = Path(options.out), options
    if name == "export":
        return stages.export(out, o.student, o.export, say)
    if name == "short-query":
        return stages.short_query(out, o.short_query, say)
    if name == "quantize":
        return stages.quantize(out, o.quantize, o.gate, say)
    if name == "verify":
        return stages.verify(out, o.gate, say)
    if name == "compile":
        return stages.compile(out, o.compile, o.gate, say)
    if name == "index":
        return stages.index(out, o.index, observer.index_progress)
    if name == "bench":
        return stages.bench(out, bench_options(o), say)
    if name == "report":
        return stages.report(out)
    if name == "bundle":
        return stages.bundle(out, o.bundle, say)
    if name == "apk":
        return stages.apk(out, o.bundle, say)
    raise ValueError(name)


@contextlib.contextmanager
def _stage_log(out: Path, name: str, verbose: bool):
    """The stage's tool output goes to a temporary log, moved to DIR/logs/<name>.log afterwards (an export that
    fails in a new folder leaves no folder behind, so its log stays in the temp dir and its path is shown)."""
    import os

    from . import confined
    from .atomic import publish_mode
    from .logs import tool_output_to

    fd, tmp = tempfile.mkstemp(prefix=f"mcad-{name}-", suffix=".log")
    os.close(fd)
    publish_mode(tmp)
    final = out / LOGS_DIR / f"{name}.log"
    state = {"path": Path(tmp)}
    try:
        with tool_output_to(tmp, enabled=not verbose):
            yield state
    finally:
        if verbose or os.path.getsize(tmp) == 0:  # nothing to keep: no log file (an empty one says nothing)
            Path(tmp).unlink(missing_ok=True)
            # an older run's log of this stage would misdescribe this one
            confined.remove_contract_file(out, final.relative_to(out))
            state["path"] = None
        elif (out / MANIFEST).is_file():
            confined.write_bytes(out, final.relative_to(out), Path(tmp).read_bytes())
            Path(tmp).unlink(missing_ok=True)
            state["path"] = final


def run_pipeline(
    options: PipelineOptions | None = None, observer: Observer | None = None, *, verbose: bool = False
) -> PipelineResult:
    from .atomic import folder_lock
    from .errors import BudgetMissError
    from .manifest import read_manifest

    options = options or PipelineOptions()
    observer = observer or Observer()
    options.out = Path(options.out)
    preflight(options)
    started = time.time()
    out = options.out
    result = PipelineResult(out=out, manifest={})
    with folder_lock(out, "run"):
        state = resume.RunState(out)
        if state.problem:
            observer.rerun(STAGES[0], f"{state.problem}; every stage runs")
        now = resume.snapshot(out, state.files)  # the folder as it is; after each stage, as that stage left it
        names = wanted_stages(options)
        forced_from = next((n for n in names if "all" in options.force or n in options.force), None)
        running, previous = False, None
        for name in names:
            stage_options, external = _stage_inputs(name, options)
            stage_digest = resume.digest(name, stage_options, previous, external)
            previous = stage_digest
            if not running:
                outside = outside_outputs(name, options)
                why = "forced (--force)" if name == forced_from else state.unchanged(name, stage_digest, now, outside)
                if why is None:
                    result.skipped.append(name)
                    observer.skipped(name, "unchanged since the last run")
                    continue
                running = True
                if why != "not finished before" and not state.problem:
                    observer.rerun(name, why)
                state.forget_from(names[names.index(name) :])
            before = now
            t0 = time.time()
            error = None
            with _stage_log(out, name, verbose) as log, observer.stage(name) as say:
                try:
                    value = _call(name, options, observer, say)
                except stages.ShortQuerySkipped as e:
                    value = {"skipped": str(e)}
                except BaseException as e:  # noqa: BLE001 - reported with its log, then re-raised as it was
                    error = e
            if error is not None:
                observer.failed(name, error, log["path"])
                raise error
            _store(result, name, value, out)
            result.ran.append(name)
            observer.finished(name, value)
            now = resume.snapshot(out, now)
            state.finished(name, stage_digest, before, now, time.time() - t0, outside_outputs(name, options))
            if name == "bench" and options.enforce_budget and not value["budget"]["passed"]:
                stages.report(out)
                raise BudgetMissError(_budget_miss(value))
        result.manifest = read_manifest(out)
        for name in result.skipped:
            if name != "export":  # its result is the manifest just read
                _store(result, name, None, out)
    result.seconds = round(time.time() - started, 1)
    return result


def _budget_miss(report: dict) -> str:
    lat, budget = report["query_latency_ms"], report["budget"]
    return (
        f"budget missed: p50 {lat['p50']:.2f} ms (budget {budget['latency_ms']:g}), peak RSS "
        f"{report['peak_rss_mb']:.1f} MB (budget {budget['memory_mb']:g})"
    )


def _store(result: PipelineResult, name: str, value, out: Path) -> None:
    """A stage's result, or for a skipped stage (`value` None, called after the final manifest is read) what it
    left on disk."""

    def read(rel):
        path = out / rel
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    if name == "export":
        result.manifest = value
    elif name == "short-query":
        result.short_query = None if value is None or "skipped" in value else value
    elif name == "quantize":
        result.quantized = (
            value
            if value is not None
            else [a for a in result.manifest["artifacts"] if "recipe" in a and "target" not in a]
        )
    elif name == "verify":
        result.fidelity = value if value is not None else read_fidelity(result.out)
    elif name == "compile":
        result.compiled = value if value is not None else [a for a in result.manifest["artifacts"] if "target" in a]
    elif name == "index":
        from .contract import INDEX_DIR, INDEX_META

        result.index = value if value is not None else read(f"{INDEX_DIR}/{INDEX_META}")
    elif name == "bench":
        result.bench = value if value is not None else read_bench(result.out)
    elif name == "report":
        result.report = value
    elif name == "bundle":
        result.bundle = value
    elif name == "apk":
        from .contract import APK_RECORD

        result.apk = value if value is not None else read(APK_RECORD)


__all__ = ["STAGES", "Observer", "PipelineResult", "preflight", "run_pipeline", "wanted_stages"]
