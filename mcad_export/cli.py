"""`mcad-export` command line. Each subcommand is a thin shell over one stage's entry function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__, render, stages
from .contract import LOGS_DIR
from .defaults import AIHUB_TIMEOUT_S, BUDGET_MB, BUDGET_MS, DEFAULT_OUT, INDEX_BATCH, NUM_CALIB, SIM_SAMPLES
from .errors import McadError
from .options import (
    BenchOptions,
    BundleOptions,
    CompileOptions,
    ExportOptions,
    IndexOptions,
    PipelineOptions,
    QuantizeOptions,
    ShortQueryOptions,
    StudentOptions,
)
from .pipeline import Observer
from .render import esc


def _add_student_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--student",
        metavar="SPEC",
        help="open_clip:<ARCH> | open_clip:<config.json> | hf:<DIR> (CLIPModel or "
        "VisionTextDualEncoderModel) | dual:<spec.json> (vision + BERT-family text) | embedded:minilm "
        "(packaged, real MiniLM text tower); default: the embedded student",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        type=Path,
        help=".pt/.pth (loaded with weights_only=True) or .safetensors; plain state dict or open_clip "
        "training checkpoint",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="no weights: an untrained model of the architecture (benchmarks only; accuracy meaningless)",
    )
    p.add_argument(
        "--no-tflite",
        dest="tflite",
        action="store_false",
        help="skip the TFLite (LiteRT) twins of the encoders (litert-torch conversion)",
    )


def _add_quantize_args(p: argparse.ArgumentParser) -> None:
    from .quantize.onnx_recipes import DEFAULT_PRECISIONS, PRECISIONS

    p.add_argument(
        "--precision",
        action="append",
        choices=PRECISIONS,
        metavar="P",
        help=f"one of {', '.join(PRECISIONS)}; repeatable (default: {', '.join(DEFAULT_PRECISIONS)}; w4 is opt-in)",
    )
    p.add_argument(
        "--calib-images",
        type=Path,
        metavar="DIR",
        help="calibration images (jpg/jpeg/png/bmp/webp, EXIF-upright; unreadable or > 200 MP "
        "skipped and counted, as index does)",
    )
    p.add_argument("--calib-captions", type=Path, metavar="FILE", help="calibration captions, one per line")
    p.add_argument(
        "--num-calib", type=int, default=NUM_CALIB, help=f"calibration samples per encoder (default {NUM_CALIB})"
    )
    p.add_argument(
        "--allow-small-calibration",
        action="store_true",
        help="accept fewer samples than --num-calib (recorded in the manifest)",
    )
    p.add_argument(
        "--with-buckets",
        action="store_true",
        help="also quantize the 16/32-token length buckets with the integer CPU recipes (dynamic, dyntok, w8, "
        "w4), each gated on the captions that fit it",
    )
    p.add_argument(
        "--no-auto",
        dest="auto",
        action="store_false",
        help="no automatic mixed precision: keep the plain quantized model even if it misses the gate",
    )


def _add_gate_args(p: argparse.ArgumentParser) -> None:
    from .quantize.fidelity import DEFAULT_GATE as g

    points = round(g.max_r1_drop * 100, 6)
    p.add_argument(
        "--max-r1-drop", type=float, default=points, help=f"max text->image R@1 drop, points (default {points})"
    )
    p.add_argument(
        "--min-top10-overlap",
        type=float,
        default=g.min_top10_overlap,
        help=f"min top-10 overlap with fp32 (default {g.min_top10_overlap})",
    )
    p.add_argument(
        "--min-cosine-mean",
        type=float,
        default=g.min_cosine_mean,
        help=f"min mean cosine vs PyTorch fp32 (default {g.min_cosine_mean})",
    )
    p.add_argument(
        "--min-cosine-min",
        type=float,
        default=g.min_cosine_min,
        help="min per-sample cosine vs PyTorch fp32, applied to degenerate students only (default 0.98)",
    )
    p.add_argument(
        "--min-cosine-floor",
        type=float,
        default=g.min_cosine_floor,
        help=f"min per-sample cosine vs PyTorch fp32 for trained students: no sample may be destroyed "
        f"(default {g.min_cosine_floor})",
    )
    p.add_argument(
        "--r1-alpha",
        type=float,
        default=g.r1_alpha,
        help="an R@1 drop over --max-r1-drop fails only when the captions it loses outnumber those it gains beyond "
        f"chance: one-sided exact McNemar test at this level (default {g.r1_alpha})",
    )
    p.add_argument(
        "--degenerate-pairwise-cosine",
        type=float,
        default=g.degenerate_pairwise_cosine,
        help="fp32 embeddings whose mean pairwise cosine reaches this are degenerate (untrained), as are "
        "fp32 rankings at chance (t2i R@10 <= 2x chance): ranking metrics are noise, so such a student "
        "is gated on cosine alone (default 0.8)",
    )


def _add_index_kind(p: argparse.ArgumentParser) -> None:
    from .runtime.index import INDEX_KINDS

    p.add_argument(
        "--kind",
        choices=INDEX_KINDS,
        default=IndexOptions.kind,
        help="flat (exact, numpy), sq8 (faiss 8-bit + exact re-rank) or ivfpq (large galleries; faiss "
        "IVF-PQ + exact re-rank); default flat",
    )


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return values


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    from .bench import DEFAULT_GALLERY_SIZE, DEFAULT_SWEEP_SIZES

    p.add_argument(
        "--artifact",
        metavar="PATH",
        help="text-encoder artifact (default: the fastest that does not miss the fidelity gate)",
    )
    cores = os.cpu_count() or 1
    p.add_argument(
        "--threads",
        type=_int_list,
        default=tuple(dict.fromkeys((1, cores))),
        metavar="N[,N...]",
        help=f"thread counts to measure; the first is the one the budget is judged on (default 1,{cores}: "
        "single-thread and all cores)",
    )
    p.add_argument(
        "--gallery-size",
        type=int,
        default=DEFAULT_GALLERY_SIZE,
        metavar="N",
        help=f"images in the searched gallery (default {DEFAULT_GALLERY_SIZE:,}); rows beyond the real "
        "index are synthetic and reported as such; 0 = the real index as it is",
    )
    p.add_argument(
        "--index-kind",
        choices=("flat", "sq8", "ivfpq"),
        default=None,
        help="index kind for the bench gallery (default: ivfpq from 50,000 images, else the kind of DIR/index)",
    )
    p.add_argument(
        "--budget-mb",
        type=float,
        default=BUDGET_MB,
        help=f"peak RSS budget of the query process (default {BUDGET_MB:g})",
    )
    p.add_argument(
        "--budget-ms", type=float, default=BUDGET_MS, help=f"p50 query latency budget (default {BUDGET_MS:g})"
    )
    p.add_argument("--enforce-budget", action="store_true", help="exit 6 when the budget is missed")
    p.add_argument(
        "--sweep-sizes",
        type=_int_list,
        default=DEFAULT_SWEEP_SIZES,
        metavar="N[,N...]",
        help="gallery sizes for the latency-vs-size sweep (default 1000,10000,100000; 0 skips it)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the PyTorch eager baseline (no speed-up ratio then)",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats (a few seconds per measurement)")


def _add_compile_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--target",
        action="append",
        metavar="T",
        required=required,
        default=None if required else [],
        help="e.g. qnn:SM8650, litert:mediatek:MT6989 (repeatable; `mcad-export targets` lists them)",
    )
    p.add_argument(
        "--allow-cpu-fallback",
        action="store_true",
        help="accept a compiled model with ops left for the phone's CPU (counted in the manifest)",
    )
    p.add_argument(
        "--sim-samples",
        type=int,
        default=SIM_SAMPLES,
        help=f"held-out samples checked on the (slow) HTP simulator (default {SIM_SAMPLES})",
    )
    p.add_argument(
        "--aihub-runtime",
        choices=("tflite", "qnn_context_binary", "onnx"),
        default="tflite",
        help="aihub targets: what AI Hub compiles to (--target_runtime; default tflite)",
    )
    p.add_argument(
        "--aihub-quantize",
        action="store_true",
        help="aihub targets: quantize in AI Hub first (int8 weights; int16 text / int8 image activations) "
        "with held-out calibration samples",
    )
    p.add_argument(
        "--aihub-timeout",
        type=float,
        default=AIHUB_TIMEOUT_S,
        metavar="S",
        help="aihub targets: give up waiting on one job after S seconds (it keeps running; a rerun "
        "resumes it; default 3600)",
    )


def gate_from(args):
    from .quantize.fidelity import Gate

    return Gate(
        max_r1_drop=args.max_r1_drop / 100,
        min_top10_overlap=args.min_top10_overlap,
        min_cosine_mean=args.min_cosine_mean,
        min_cosine_min=args.min_cosine_min,
        degenerate_pairwise_cosine=args.degenerate_pairwise_cosine,
        min_cosine_floor=args.min_cosine_floor,
        r1_alpha=args.r1_alpha,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcad-export",
        description="Deploy distilled CLIP-style students: export, verify and package image and text encoders.",
    )
    parser.add_argument("--version", action="version", version=f"mcad-export {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    p = sub.add_parser(
        "export",
        help="export image and text encoders to ONNX and TFLite with parity checks",
        description="Writes image_encoder.onnx, text_encoder.onnx, tflite/{image,text}_encoder.tflite, "
        "tokenizer/, reference/ (PyTorch fp32 embeddings of the evaluation set) and "
        "manifest.json atomically into --out (see docs/contract.md for the contract).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_student_args(p)
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="keep the files even if parity (min cosine >= 0.9999) fails; the miss is still reported",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="evaluation samples for parity and the reference embeddings "
        "(default: 1000 held-out scenes for the embedded student, 128 otherwise)",
    )

    p = sub.add_parser(
        "quantize",
        help="INT8/16-bit/fp16 variants of every fp32 encoder, tuned to pass the gate",
        description="Writes <encoder>.<precision>.onnx (w8a8, w8a16, dynamic, dyntok, w8, w4, fp16) and "
        "tflite/<encoder>.<precision>.tflite (w8a8, w8a16, dynamic) beside the fp32 files and "
        "registers them in the manifest with sha256, size, recipe, per-layer damage and the "
        "auto mixed-precision steps; variants that still miss the gate are rejected and "
        "listed. Calibrates on --calib-images/--calib-captions or the student's calib split.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_quantize_args(p)
    _add_gate_args(p)

    p = sub.add_parser(
        "verify",
        help="fidelity gate: every artifact vs PyTorch fp32 on the held-out set",
        description="Cosine, text->image and image->text R@1/5/10 and top-10 overlap for every "
        "artifact in the manifest on its runtime; writes reports/fidelity.json and exits 4 "
        "naming artifact, metric and numbers when any artifact misses the gate.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    p.add_argument(
        "--artifact",
        action="append",
        default=None,
        metavar="PATH",
        help="gate only this artifact (manifest path or name; repeatable); the other records in "
        "reports/fidelity.json are kept",
    )
    _add_gate_args(p)

    p = sub.add_parser(
        "index",
        help="embed a folder of images into a gallery index (flat, sq8, ivfpq)",
        description="Embeds every .jpg/.jpeg/.png/.bmp/.webp under --images (a folder, recursively; a glob; or a "
        "list file), in sorted path order (EXIF orientation "
        "applied; unreadable, > 200 MP or non-finite images are skipped and counted) with "
        "the fp32 image encoder (or --artifact) and saves DIR/index/ (see docs/contract.md). "
        "Without --images: the embedded student's held-out gallery, written to DIR/gallery/. --engine ray "
        "embeds on a Ray cluster (Ray Data actors; shards in DIR/index_shards/, a rerun computes only the "
        "missing ones); the workers must reach the image paths.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    p.add_argument(
        "--images",
        metavar="PATH|GLOB|LIST",
        help="a folder (searched recursively), a glob ('photos/**/*.jpg') or a list file (.txt/.lst: one path "
        "per line, relative to the list); rows are in sorted path order",
    )
    _add_index_kind(p)
    p.add_argument("--artifact", metavar="PATH", help="image-encoder artifact (default: the fp32 ONNX file)")
    p.add_argument("--batch", type=int, default=INDEX_BATCH, help=f"images per encoder call (default {INDEX_BATCH})")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default=IndexOptions.engine,
        help="local (default, this process) or ray (Ray Data actors; the `ray` extra)",
    )
    p.add_argument("--address", metavar="ADDR", help="ray: an existing cluster, e.g. ray://head:10001 or auto")
    p.add_argument("--workers", type=int, default=IndexOptions.workers, help="ray: actors (default 1)")
    p.add_argument(
        "--cpus-per-worker",
        type=int,
        default=IndexOptions.cpus_per_worker,
        help="ray: each actor's CPUs and ONNX Runtime threads (default 1)",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=IndexOptions.shard_size,
        help="ray: images per shard, the unit written to DIR/index_shards/ and resumed (default 128)",
    )

    p = sub.add_parser(
        "search",
        help="text -> ranked gallery images (the torch-free query path)",
        description="Tokenizes the text, runs the text encoder the manifest deploys (or --artifact) "
        "and prints the top-k gallery images with their cosine scores.",
    )
    p.add_argument("dir", type=Path, help="an export folder with an index (mcad-export index)")
    p.add_argument("text", help='the query, e.g. "a red circle above a blue square"')
    p.add_argument("-k", type=int, default=5, help="how many results (default 5)")
    p.add_argument("--artifact", metavar="PATH", help="text-encoder artifact (default: the deployed one)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")

    p = sub.add_parser(
        "bench",
        help="search latency and memory vs the 100 MB / 8 ms budget, with a PyTorch baseline",
        description="Times every host-runnable encoder, picks the fastest text encoder that does not "
        "miss the fidelity gate, then measures end-to-end queries (tokenize + encoder + "
        "top-10) and peak RSS in a fresh torch-free process, the PyTorch eager fp32 "
        "baseline in another, the peak GEMM rate (physical limit) and index latency vs "
        "gallery size. Writes reports/bench.json and records the choice in the manifest.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_bench_args(p)

    p = sub.add_parser(
        "report",
        help="profiling report: reports/report.html (self-contained), report.md, report.json",
        description="Renders the bench, fidelity and artifact numbers into one offline HTML page "
        "(embedded SVG plots), a Markdown summary and the JSON both are made of.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has been benched")
    p.add_argument(
        "--device-bench",
        type=Path,
        metavar="FILE",
        help="device-bench.json from the app's benchmark mode (adb shell am start -n ai.mcad.demo/.MainActivity "
        "--ez bench true; adb pull /sdcard/Android/data/ai.mcad.demo/files/device-bench.json): checked, kept in "
        "reports/ and shown beside the host and AI Hub numbers",
    )

    p = sub.add_parser(
        "targets",
        help="list the compile targets (Snapdragon, Dimensity) and their chip ids",
        description="Every <backend>:<SoC> that `compile --target` accepts, from the SoC table "
        "(mcad_export/compile/socs.json; a new SoC is one row there).",
    )

    p = sub.add_parser(
        "compile",
        help="compile the encoders for Snapdragon / Dimensity NPUs and gate them",
        description="qnn:<SoC>: w8a16 QDQ + HTP context binary via onnxruntime-qnn, checked on the "
        "x86 HTP simulator (cosine and recall into reports/fidelity.json, runtime "
        "qnn-htp-sim). litert:qualcomm:<SoC> / litert:mediatek:<SoC>: LiteRT AOT compile "
        "of the TFLite encoders (needs the vendor SDK libraries). aihub:<SoC or AI Hub "
        "device>: Qualcomm AI Hub upload, compile and on-device profile (needs an API "
        "token; job ids go to the manifest at once, so a rerun resumes). Files go to "
        "compiled/<backend>-<SoC>/ and into the manifest.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    _add_compile_args(p)
    p.add_argument(
        "--num-calib",
        type=int,
        default=NUM_CALIB,
        help=f"calibration samples for the HTP QDQ model (default {NUM_CALIB})",
    )
    p.add_argument("--allow-small-calibration", action="store_true")
    _add_gate_args(p)

    p = sub.add_parser(
        "bundle",
        help="copy models, tokenizer, index and thumbnails into the Android demo's assets",
        description="Writes APP/app/src/main/assets/mcad/ with bundle.json (sha256, sizes, "
        "preprocessing, runtime and accelerator per target). Never overwrites or deletes "
        "files it did not write; a rerun with the same inputs changes nothing.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has an index (mcad-export index)")
    p.add_argument("--app", type=Path, required=True, help="the Android demo folder (android_demo in this repo)")
    p.add_argument(
        "--target",
        dest="target_for_bundle",
        metavar="T",
        help="cpu (default: bench's choice), qnn:<SoC>, aihub:<SoC>, litert:mediatek:<SoC>, ... (compile it first)",
    )
    p.add_argument("--with-image-encoder", action="store_true", help="also bundle the image encoder")
    p.add_argument(
        "--budget-mb", type=float, default=BUDGET_MB, help=f"resident budget for the bundle (default {BUDGET_MB:g})"
    )
    p.add_argument("--allow-over-budget", action="store_true")
    p.add_argument(
        "--allow-ungated",
        action="store_true",
        help="ship a device-only artifact (AI Hub, LiteRT NPU) the fidelity gate could not run on this machine; "
        "bundle.json records that its gate never ran (artifacts that failed the gate are never shipped)",
    )

    p = sub.add_parser(
        "apk",
        help="bundle, then build, sign and verify the Android demo's APK (offline)",
        description="Bundles DIR into APP's assets (as `bundle` does), then builds mcad-demo-debug.apk from the app's "
        "sources without Gradle: aapt2, javac against android.jar and ONNX Runtime's Java API, D8, ONNX Runtime's "
        "native libraries (arm64-v8a, x86_64), zipalign, apksigner (v2 + v3), then verifies the signature and the "
        "alignment. Writes DIR/apk/mcad-demo-debug.apk and DIR/apk/apk.json (sha256, size, SDK levels, ABIs, "
        "signature, toolchain, size breakdown). Uses ANDROID_HOME's build-tools and platform when set, else the "
        "toolchain `python -m mcad_export.apk.provision` put in the cache; a missing piece exits 7. Install with "
        "`adb install -r DIR/apk/mcad-demo-debug.apk`.",
    )
    p.add_argument("dir", type=Path, help="an export folder that has an index (mcad-export index)")
    p.add_argument("--app", type=Path, required=True, help="the Android demo folder (android_demo in this repo)")
    p.add_argument("--target", dest="target_for_bundle", metavar="T", help="as for bundle (default: the CPU)")
    p.add_argument("--keystore", type=Path, metavar="FILE", help="sign with this keystore (default: a debug key)")
    p.add_argument("--keystore-alias", metavar="ALIAS", help="the key's alias in --keystore")
    p.add_argument("--keystore-pass-env", metavar="VAR", help="the environment variable holding --keystore's password")
    p.add_argument("--allow-ungated", action="store_true", help="as for bundle")

    p = sub.add_parser(
        "short-query",
        help="export the text encoder that runs only a query's real tokens",
        description="Writes text_encoder.dyn.onnx (dynamic token axis; positional table and causal "
        "mask sliced to the input) and proves it against the full-length PyTorch model on "
        "every held-out caption at its real length (cosine >= 0.9999). A bidirectional text tower "
        "(MobileCLIP2's) fails that cut and gets the same one-query graph fed every "
        "position instead, proved at full length. "
        "`quantize` then makes its INT8 variants and `bench` picks it when it is fastest. "
        "Also writes static length buckets (buckets/text_encoder.len<N>.onnx) that "
        "`compile` turns into NPU graphs, each proved on the captions that fit it.",
    )
    p.add_argument("dir", type=Path, help="an export folder")
    p.add_argument(
        "--buckets",
        type=_int_list,
        default=None,
        metavar="N[,N...]",
        help="static token lengths for NPU targets, below the context length (default 16,32; 0 for none)",
    )

    p = sub.add_parser(
        "golden",
        help="write golden vectors for the Android core's tests",
        description="Token ids (varied corpus), preprocessing tensors for sample images and top-k "
        "over a small index, from an export; android_demo/core/test.sh checks the Java "
        "core reproduces them.",
    )
    p.add_argument("dir", type=Path, help="an export folder with an index")
    p.add_argument("--out", type=Path, default=Path("android_demo/core/src/test/resources/golden"))

    p = sub.add_parser(
        "train-student",
        help="retrain the embedded default student (~25 min on 2 CPU cores)",
        description="Renders the scene data, trains the teacher, distills the student MCAD-style "
        "and writes student.safetensors, its config and card (atomically).",
    )
    from .training import recipe

    p.add_argument("--out", type=Path, default=None, help="folder to write (default: the packaged student)")
    p.add_argument("--teacher-steps", type=int, default=recipe.TEACHER_STEPS)
    p.add_argument("--student-steps", type=int, default=recipe.STUDENT_STEPS)
    p.add_argument("--train-images", type=int, default=recipe.TRAIN_IMAGES)
    return parser


def main(argv=None) -> int:
    from rich.console import Console

    from .logs import detached_stream, silence_import_deprecations

    silence_import_deprecations()
    args = build_parser().parse_args(argv)
    # Our console writes to copies of stdout/stderr: `run` points fd 1 and 2 at each stage's log while it runs.
    err = Console(file=detached_stream(sys.stderr), highlight=False)
    console = Console(file=detached_stream(sys.stdout), highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        # Piped output (CI logs, files) gets a wide console so tables are never truncated.
        with _third_party_warnings_hidden(args), _writer_lock(args):
            return _dispatch(args, console)
    except McadError as e:
        err.print(f"[bold red]error:[/] {esc(' '.join(str(e).split()))}", soft_wrap=True)
        return e.exit_code
    except OSError as e:
        # A full disk or quota while a stage writes: staging is removed on the way out, so nothing half-written
        # is left; say so in one line instead of a traceback.
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        err.print(
            f"[bold red]error:[/] {esc(e.strerror or str(e))}{esc(where)}: free space (or choose another folder) and "
            "rerun; nothing half-written was kept",
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was kept")
        return 130


# Commands that write into a folder, and the argument naming it: the folder's lock is taken before any heavy
# import (torch takes seconds), so a second writer is refused at once. The stage's own lock then nests.
WRITERS = {
    "export": "out",
    "run": "out",
    "quantize": "dir",
    "verify": "dir",
    "index": "dir",
    "bench": "dir",
    "report": "dir",
    "compile": "dir",
    "bundle": "dir",
    "apk": "dir",
    "short-query": "dir",
}


def _writer_lock(args):
    import contextlib

    from .atomic import folder_lock

    name = WRITERS.get(args.command)
    folder = getattr(args, name, None) if name else None
    return folder_lock(Path(folder), args.command) if folder is not None else contextlib.nullcontext()


def _third_party_warnings_hidden(args):
    """Python warnings of torch, PIL, numpy, faiss, Ray ... say nothing about the user's model and break the
    one-`error:`-line rule: the CLI hides them unless the user asked for them (PYTHONWARNINGS, or --verbose)."""
    import contextlib
    import os
    import warnings

    if os.environ.get("PYTHONWARNINGS") or getattr(args, "verbose", False):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _dispatch(args, console) -> int:
    handlers = {
        "export": _export,
        "run": _run,
        "train-student": _train,
        "quantize": _quantize,
        "verify": _verify,
        "index": _index,
        "search": _search,
        "bench": _bench,
        "report": _report,
        "targets": lambda args, console: render.targets(console),
        "compile": _compile,
        "bundle": _bundle,
        "apk": _apk,
        "golden": _golden,
        "short-query": _short_query,
    }
    result = handlers[args.command](args, console)
    return result if isinstance(result, int) else 0


# Options from arguments: the CLI's only job besides rendering (defaults live in options.py).


def student_options(args) -> StudentOptions:
    return StudentOptions(spec=args.student, weights=args.weights, random_init=args.random_init)


def export_options(args) -> ExportOptions:
    return ExportOptions(tflite=args.tflite, verify=not args.no_verify, samples=getattr(args, "samples", None))


def quantize_options(args) -> QuantizeOptions:
    return QuantizeOptions(
        precisions=tuple(args.precision) if args.precision else None,
        calib_images=args.calib_images,
        calib_captions=args.calib_captions,
        num_calib=args.num_calib,
        allow_small=args.allow_small_calibration,
        auto=args.auto,
        buckets=args.with_buckets,
    )


def compile_options(args) -> CompileOptions:
    return CompileOptions(
        targets=tuple(args.target or ()),
        allow_cpu_fallback=args.allow_cpu_fallback,
        sim_samples=args.sim_samples,
        num_calib=args.num_calib,
        allow_small=args.allow_small_calibration,
        aihub_runtime=args.aihub_runtime,
        aihub_quantize=args.aihub_quantize,
        aihub_timeout_s=args.aihub_timeout,
    )


def bench_settings(args) -> BenchOptions:
    """bench's Settings from `bench` or `run` arguments."""
    return BenchOptions(
        artifact=args.artifact if args.command == "bench" else None,
        threads=args.threads,
        gallery_size=args.gallery_size,
        index_kind=args.index_kind,
        budget_mb=args.budget_mb,
        budget_ms=args.budget_ms,
        sweep_sizes=tuple(s for s in args.sweep_sizes if s),
        baseline=args.baseline,
        quick=args.quick,
    )


def pipeline_options(args) -> PipelineOptions:
    from .defaults import STAGES
    from .errors import InputError

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


class _status:
    """A rich spinner whose text each stage updates; invisible when output is not a terminal."""

    def __init__(self, console, text):
        self.console, self.text = console, text

    def __enter__(self):
        self._live = self.console.status(self.text)
        self._live.__enter__()
        return self.update

    def update(self, message: str) -> None:
        self._live.update(message)

    def __exit__(self, *exc):
        return self._live.__exit__(*exc)


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
        from .errors import FidelityGateError
        from .logs import tail

        if isinstance(error, FidelityGateError):
            render.fidelity(self.console, self.out)
        lines = tail(log) if log else []
        if lines:
            self.console.print(f"[red]{name} failed[/]; last lines of its tool output ({esc(log)}):")
            for line in lines:
                self.console.print(f"  {esc(line)}", soft_wrap=True)


def _run(args, console) -> int:
    from .pipeline import run_pipeline

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


def _export(args, console) -> dict:
    with _status(console, "loading the student") as say:
        manifest = stages.export(args.out, student_options(args), export_options(args), say)
    render.export_summary(console, manifest, args.out)
    return manifest


def _quantize(args, console) -> list[dict]:
    with _status(console, "quantizing") as say:
        records = stages.quantize(args.dir, quantize_options(args), gate_from(args), say)
    render.quantized(console, records, args.dir)
    return records


def _verify(args, console) -> list[dict]:
    from .errors import FidelityGateError

    try:
        with _status(console, "verifying") as say:
            records = stages.verify(args.dir, gate_from(args), say, only=args.artifact)
    except FidelityGateError:
        render.fidelity(console, args.dir)
        raise
    render.fidelity(console, args.dir)
    return records


def _index(args, console) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    options = IndexOptions(
        images=args.images,
        kind=args.kind,
        artifact=args.artifact,
        batch=args.batch,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        shard_size=args.shard_size,
    )
    with Progress(
        TextColumn("embedding images"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("index", total=None)
        meta = stages.index(args.dir, options, lambda done, total: bar.update(task, completed=done, total=total))
    render.index(console, meta, args.dir)
    return meta


def _search(args, console) -> int:
    from .runtime.search import TextSearch, check_query

    check_query(args.text, args.k)  # before seconds of loading
    if args.threads < 1:
        from .errors import InputError

        raise InputError(f"--threads must be a positive thread count, got {args.threads}")
    searcher = TextSearch(args.dir, args.artifact, threads=args.threads)
    hits, times = searcher.timed_search(args.text, args.k)
    render.search(console, args.text, searcher, hits, times)
    return 0


def _bench(args, console) -> int:
    from .errors import BudgetMissError
    from .pipeline import _budget_miss

    with _status(console, "benchmarking") as say:
        report = stages.bench(args.dir, bench_settings(args), say)
    render.bench(console, report, args.dir)
    if args.enforce_budget and not report["budget"]["passed"]:
        raise BudgetMissError(_budget_miss(report))
    return 0


def _compile(args, console) -> list[dict]:
    from .errors import FidelityGateError

    try:
        with _status(console, "compiling") as say:
            records = stages.compile(args.dir, compile_options(args), gate_from(args), say)
    except FidelityGateError:
        render.fidelity(console, args.dir)
        raise
    render.compiled(console, records, args.dir)
    return records


def _bundle(args, console) -> dict:
    options = BundleOptions(
        app=args.app,
        target=args.target_for_bundle,
        with_image_encoder=args.with_image_encoder,
        budget_mb=args.budget_mb,
        allow_over_budget=args.allow_over_budget,
        allow_ungated=args.allow_ungated,
    )
    with _status(console, "bundling") as say:
        result = stages.bundle(args.dir, options, say)
    render.bundle(console, result)
    return result


def _short_query(args, console) -> dict:
    with _status(console, "short-query encoder") as say:
        record = stages.short_query(args.dir, ShortQueryOptions(buckets=args.buckets, required=True), say)
    render.short_query(console, record, args.dir)
    return record


def _report(args, console) -> None:
    render.report(console, stages.report(args.dir, args.device_bench))


def _apk(args, console) -> dict:
    from .apk import build_apk, user_keystore

    keystore = user_keystore(args.keystore, args.keystore_alias, args.keystore_pass_env) if args.keystore else None
    with _status(console, "building the APK") as say:
        record = build_apk(
            args.dir,
            args.app,
            target=args.target_for_bundle,
            keystore=keystore,
            allow_ungated=args.allow_ungated,
            progress=say,
        )
    render.apk(console, record, args.dir)
    return record


def _golden(args, console) -> None:
    from .bundle.golden import write_golden

    counts = write_golden(args.dir, args.out)
    console.print(f"golden vectors in {esc(args.out)}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _train(args, console) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .students.embedded import ASSET_DIR
    from .training.retrain import retrain

    out = args.out or ASSET_DIR
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {}

        def report(stage, step, total, loss):
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, loss=0.0)
            progress.update(tasks[stage], completed=step, total=total, loss=loss)

        card = retrain(
            Path(out),
            progress=report,
            teacher_steps=args.teacher_steps,
            student_steps=args.student_steps,
            train_images=args.train_images,
        )
    r = card["heldout_recall"]["student_fp32"]
    console.print(
        f"student written to {esc(out)}: held-out t2i R@1 {r['t2i_r1']:.3f}, R@10 {r['t2i_r10']:.3f} "
        f"({card['train_seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
