"""`mcad-export` command line. Each subcommand is a thin shell over one stage's entry function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import McadError

DEFAULT_OUT = "mcad-out"


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
    p.add_argument("--num-calib", type=int, default=128, help="calibration samples per encoder (default 128)")
    p.add_argument(
        "--allow-small-calibration",
        action="store_true",
        help="accept fewer samples than --num-calib (recorded in the manifest)",
    )
    p.add_argument(
        "--no-auto",
        dest="auto",
        action="store_false",
        help="no automatic mixed precision: keep the plain quantized model even if it misses the gate",
    )


def _add_gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-r1-drop", type=float, default=0.5, help="max text->image R@1 drop, points (default 0.5)")
    p.add_argument("--min-top10-overlap", type=float, default=0.95, help="min top-10 overlap with fp32 (default 0.95)")
    p.add_argument("--min-cosine-mean", type=float, default=0.99, help="min mean cosine vs PyTorch fp32 (default 0.99)")
    p.add_argument(
        "--min-cosine-min",
        type=float,
        default=0.98,
        help="min per-sample cosine vs PyTorch fp32, applied to degenerate students only (default 0.98)",
    )
    p.add_argument(
        "--degenerate-pairwise-cosine",
        type=float,
        default=0.8,
        help="fp32 embeddings whose mean pairwise cosine reaches this are degenerate (untrained), as are "
        "fp32 rankings at chance (t2i R@10 <= 2x chance): ranking metrics are noise, so such a student "
        "is gated on cosine alone (default 0.8)",
    )


def _add_index_kind(p: argparse.ArgumentParser) -> None:
    from .runtime.index import INDEX_KINDS

    p.add_argument(
        "--kind",
        choices=INDEX_KINDS,
        default="flat",
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
    p.add_argument("--budget-mb", type=float, default=100.0, help="peak RSS budget of the query process (default 100)")
    p.add_argument("--budget-ms", type=float, default=8.0, help="p50 query latency budget (default 8)")
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
    from .compile import DEFAULT_SIM_SAMPLES

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
        default=DEFAULT_SIM_SAMPLES,
        help=f"held-out samples checked on the (slow) HTP simulator (default {DEFAULT_SIM_SAMPLES})",
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
        default=3600,
        metavar="S",
        help="aihub targets: give up waiting on one job after S seconds (it keeps running; a rerun "
        "resumes it; default 3600)",
    )


def _e(value) -> str:
    """User- and file-supplied text for rich output: markup escaped, control characters and non-UTF-8 bytes shown
    as %XX (a file named `photo [1].jpg` or a query with `[/]` is printed, never interpreted)."""
    from rich.markup import escape

    from .runtime.index import encode_path

    return escape(encode_path(str(value)))


def gate_from(args):
    from .quantize.fidelity import Gate

    return Gate(
        max_r1_drop=args.max_r1_drop / 100,
        min_top10_overlap=args.min_top10_overlap,
        min_cosine_mean=args.min_cosine_mean,
        min_cosine_min=args.min_cosine_min,
        degenerate_pairwise_cosine=args.degenerate_pairwise_cosine,
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

    p = sub.add_parser(
        "export",
        help="export image and text encoders to ONNX and TFLite with parity checks",
        description="Writes image_encoder.onnx, text_encoder.onnx, tflite/{image,text}_encoder.tflite, "
        "tokenizer/, reference/ (PyTorch fp32 embeddings of the evaluation set) and "
        "manifest.json atomically into --out (see ARCHITECTURE.md for the contract).",
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
    _add_gate_args(p)

    p = sub.add_parser(
        "index",
        help="embed a folder of images into a gallery index (flat, sq8, ivfpq)",
        description="Embeds every .jpg/.jpeg/.png/.bmp/.webp under --images (recursively; EXIF orientation "
        "applied; unreadable, > 200 MP or non-finite images are skipped and counted) with "
        "the fp32 image encoder (or --artifact) and saves DIR/index/ (see ARCHITECTURE.md). "
        "Without --images: the embedded student's held-out gallery, written to DIR/gallery/.",
    )
    p.add_argument("dir", type=Path, help="an export folder (with manifest.json)")
    p.add_argument("--images", type=Path, metavar="FOLDER", help="folder of images to index")
    _add_index_kind(p)
    p.add_argument("--artifact", metavar="PATH", help="image-encoder artifact (default: the fp32 ONNX file)")
    p.add_argument("--batch", type=int, default=32, help="images per encoder call (default 32)")

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
    p.add_argument("--num-calib", type=int, default=128, help="calibration samples for the HTP QDQ model (default 128)")
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
    p.add_argument("--budget-mb", type=float, default=100.0, help="resident budget for the bundle (default 100)")
    p.add_argument("--allow-over-budget", action="store_true")

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

    from .logs import silence_import_deprecations

    silence_import_deprecations()
    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    try:
        # Piped output (CI logs, files) gets a wide console so tables are never truncated.
        return _dispatch(args, Console(highlight=False, width=None if sys.stdout.isatty() else 160))
    except McadError as e:
        err.print(f"[bold red]error:[/] {_e(' '.join(str(e).split()))}", soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was kept")
        return 130


def _run(args, console) -> int:
    from .pipeline import run

    return run(args, console)


def _dispatch(args, console) -> int:
    # Each handler returns an exit code, or None for 0.
    handlers = {
        "export": lambda: _summary(console, _export(args, console), args.out),
        "run": lambda: _run(args, console),
        "train-student": lambda: _train(args, console),
        "quantize": lambda: _quantize(args, console),
        "verify": lambda: _verify(args, console),
        "index": lambda: _index(args, console),
        "search": lambda: _search(args, console),
        "bench": lambda: _bench(args, console),
        "report": lambda: _report(args, console),
        "targets": lambda: _targets(console),
        "compile": lambda: _compile(args, console),
        "bundle": lambda: _bundle(args, console),
        "golden": lambda: _golden(args, console),
        "short-query": lambda: _short_query(args, console),
    }
    result = handlers[args.command]()
    return result if isinstance(result, int) else 0


def _export(args, console) -> dict:
    from .export import ensure_writable, export_student
    from .students import load_student

    ensure_writable(args.out)  # fail before minutes of work, not after
    with _status(console, "loading the student") as status:
        student = load_student(args.student, args.weights, random_init=args.random_init)
        return export_student(
            student,
            args.out,
            verify=not args.no_verify,
            samples=getattr(args, "samples", None),
            tflite=args.tflite,
            progress=status,
        )


def _quantize(args, console) -> list[dict]:
    from .quantize import quantize_artifacts
    from .quantize.onnx_recipes import DEFAULT_PRECISIONS

    with _status(console, "quantizing") as status:
        records = quantize_artifacts(
            args.dir,
            tuple(args.precision or DEFAULT_PRECISIONS),
            calib_images=args.calib_images,
            calib_captions=args.calib_captions,
            num_calib=args.num_calib,
            allow_small=args.allow_small_calibration,
            auto=args.auto,
            gate=gate_from(args),
            progress=status,
        )
    from rich.table import Table

    table = Table(title=f"quantized artifacts in {_e(args.dir)}")
    from .manifest import total_bytes

    for col in ("artifact", "size MB", "smaller", "kept float / int8", "tuning gate", "worst layer (SQNR dB)"):
        table.add_column(col, no_wrap=col == "artifact")
    for r in records:
        worst = r["layer_damage_top"][0] if r["layer_damage_top"] else None
        table.add_row(
            _e(r["path"]),
            f"{total_bytes(r) / 1e6:.2f}",
            f"{r['size_ratio_vs_fp32']:.2f}x",
            f"{len(r['recipe']['kept_float'])} / {len(r['recipe'].get('kept_int8', []))}",
            "[green]pass[/]"
            if r["tuning"]["passed"]
            else ("[red]rejected[/]" if r["tuning"]["auto"] else "[yellow]miss, kept[/]"),
            _e(f"{short_layer(worst['node'])} ({worst['sqnr_db']})") if worst else "-",
        )
    console.print(table)
    for r in records:
        if not r["tuning"]["passed"]:
            last = r["tuning"]["steps"][-1]
            worst = ", ".join(f"{short_layer(d['node'])} ({d['sqnr_db']} dB)" for d in r["layer_damage_top"][:3])
            detail = f"{_e('; '.join(last['misses']))} after keeping {len(last['kept_float'])} layer(s) in float; " + (
                f"worst layers: {_e(worst)}" if worst else "no per-layer data for this recipe"
            )
            if r["tuning"]["auto"]:
                console.print(f"[yellow]rejected[/] {_e(r['path'])} (not kept): {detail}")
            else:
                console.print(
                    f"[yellow]kept[/] {_e(r['path'])} although it misses the tuning gate (--no-auto): "
                    f"{detail}; `mcad-export verify` judges it on the held-out set"
                )
    return records


def short_layer(name: str) -> str:
    """LiteRT scope names carry full module paths; keep the last two module names."""
    parts = name.split(";")[0].split("/")[-2:]
    return "/".join(p.rsplit(".", 1)[-1] for p in parts)


def _verify(args, console) -> list[dict]:
    from .errors import FidelityGateError
    from .quantize.verify import verify_artifacts

    try:
        with _status(console, "verifying") as status:
            records = verify_artifacts(args.dir, gate_from(args), progress=status)
    except FidelityGateError:
        _fidelity_table(console, args.dir)
        raise
    _fidelity_table(console, args.dir)
    return records


def _fidelity_table(console, directory) -> None:
    import json

    from rich.table import Table

    from .contract import FIDELITY_REPORT

    records = json.loads((Path(directory) / FIDELITY_REPORT).read_text())
    table = Table(title=f"fidelity vs PyTorch fp32 ({_e(Path(directory) / FIDELITY_REPORT)})")
    for col in ("artifact", "cos mean", "cos min", "t2i R@1", "fp32 R@1", "R@10", "top-10 overlap", "gate"):
        table.add_column(col)
    for r in records:
        if r.get("passed") is None:
            table.add_row(_e(r["artifact"]), *["-"] * 6, _e(r.get("skipped", "skipped")))
            continue
        table.add_row(
            _e(r["artifact"]),
            f"{r['cosine_mean']:.5f}",
            f"{r['cosine_min']:.4f}",
            f"{r['recall_at_1']:.3f}",
            f"{r['recall_at_1_fp32']:.3f}",
            f"{r['recall_at_10']:.3f}",
            f"{r['top10_overlap']:.3f}",
            "[green]pass[/]" if r["passed"] else "[red]MISS[/]",
        )
    degenerate = next((r for r in records if r.get("degenerate")), None)
    if degenerate:
        table.caption = (
            f"degenerate student ({'; '.join(degenerate.get('degenerate_because', []))}; fp32 pairwise "
            f"cosine {degenerate['pairwise_cosine_mean_fp32']}): R@1 and top-10 overlap are noise, "
            "gated on cosine mean and min alone"
        )
    console.print(table)


class _status:
    """A rich spinner whose text each stage updates; invisible when output is not a terminal."""

    def __init__(self, console, text):
        self.console, self.text = console, text

    def __enter__(self):
        self._live = self.console.status(self.text)
        self._live.__enter__()
        return lambda message: self._live.update(message)

    def __exit__(self, *exc):
        return self._live.__exit__(*exc)


def _index(args, console) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .runtime.gallery import build_gallery_index

    with Progress(
        TextColumn("embedding images"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("index", total=None)
        meta = build_gallery_index(
            args.dir,
            args.images,
            kind=args.kind,
            artifact=getattr(args, "artifact", None) if args.command == "index" else None,
            batch=getattr(args, "batch", 32),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    skipped = f", {meta['skipped']} unreadable file(s) skipped" if meta["skipped"] else ""
    console.print(
        f"index: {meta['count']:,} images ({meta['kind']}, {meta['dim']}-d) from {_e(meta['source'])} "
        f"-> {_e(Path(args.dir) / 'index')}{skipped}"
    )
    for s in meta.get("skipped_files", [])[:5]:
        console.print(f"  [yellow]skipped[/] {_e(s['path'])}: {_e(s['reason'])}")
    return meta


def _search(args, console) -> int:
    from .runtime.search import TextSearch, check_query

    check_query(args.text, args.k)  # before seconds of loading
    if args.threads < 1:
        from .errors import InputError

        raise InputError(f"--threads must be a positive thread count, got {args.threads}")
    search = TextSearch(args.dir, args.artifact, threads=args.threads)
    hits, times = search.timed_search(args.text, args.k)
    _render_search(console, args.text, search, hits, times)
    return 0


def _render_search(console, text: str, search, hits, times) -> None:
    from rich.table import Table

    shown = text if len(text) <= 80 else text[:77] + "..."
    table = Table(
        title=f"{_e(repr(shown))} ({_e(search.artifact['path'])}, {len(search.index):,} images, "
        f"{times['total_ms']:.1f} ms)"
    )
    for col in ("rank", "score", "path"):
        table.add_column(col, no_wrap=col == "path", overflow="fold" if col == "path" else "ellipsis")
    for h in hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", _e(h.path))
    console.print(table)


def bench_settings(args):
    """bench's Settings from `bench` or `run` arguments."""
    from .bench import Settings

    return Settings(
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


def _bench(args, console) -> int:
    from .bench import bench
    from .errors import BudgetMissError

    with _status(console, "benchmarking") as status:
        report = bench(args.dir, bench_settings(args), progress=status)
    lat, budget = report["query_latency_ms"], report["budget"]
    text = report["artifacts"]["text"]
    console.print(
        f"text encoder {_e(text['path'])} ({text['precision']}, {text['runtime']}; fidelity gate: "
        f"{ {True: 'pass', False: 'MISS', None: 'not run'}[text['gate_passed']] })"
    )
    console.print(
        f"query (tokenize + encoder + top-10 over {report['gallery_size']:,} images"
        f"{', ' + format(report['gallery']['synthetic'], ',') + ' synthetic' if report['gallery']['synthetic'] else ''}"
        f", {report['threads']} thread(s)): p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms; peak RSS {report['peak_rss_mb']:.1f} MB"
    )
    if report["baseline"]:
        console.print(
            f"baseline {_e(report['baseline']['name'])}: p50 {report['baseline']['query_latency_ms']['p50']:.2f} "
            f"ms -> {report['speedup_vs_baseline']:.1f}x faster"
        )
    limit = report["physical_limit"]
    text_limit = limit["text_encoder"]
    console.print(
        f"physical limit of the text encoder {limit['text_encoder_limit_ms']:.3f} ms, {text_limit['bound']}-"
        f"bound: {text_limit['compute_ms']:.3f} ms compute at {text_limit['peak_gops']:.0f} "
        f"{text_limit['peak_kind']} GOP/s, {text_limit['memory_ms']:.3f} ms to read "
        f"{text_limit['bytes_per_query']['total'] / 1e6:.1f} MB at {limit['read_bandwidth_gbs']:.1f} GB/s; "
        f"text-encoder efficiency {limit['text_encoder_efficiency']:.1%}"
    )
    verdict = "[green]PASS[/]" if budget["passed"] else "[red]MISS[/]"
    console.print(
        f"budget {budget['memory_mb']:g} MB / {budget['latency_ms']:g} ms: {verdict} "
        f"({_e(Path(args.dir) / 'reports' / 'bench.json')})"
    )
    if args.enforce_budget and not budget["passed"]:
        raise BudgetMissError(
            f"budget missed: p50 {lat['p50']:.2f} ms (budget {budget['latency_ms']:g}), peak RSS "
            f"{report['peak_rss_mb']:.1f} MB (budget {budget['memory_mb']:g})"
        )
    return 0


def _targets(console) -> int:
    from rich.table import Table

    from .compile.targets import all_targets, describe

    table = Table(title="compile targets (mcad-export compile DIR --target T)")
    for col in ("target", "chip", "SoC", "HTP arch", "soc_model", "AI Hub device"):
        table.add_column(col, no_wrap=col == "target")
    for t in all_targets():
        table.add_row(
            t.id,
            t.soc["name"],
            t.soc["soc"],
            f"v{t.soc['htp_arch']}" if "htp_arch" in t.soc else "-",
            str(t.soc.get("soc_model", "-")),
            t.soc.get("aihub_device", "-"),
        )
    console.print(table)
    for backend in sorted({t.backend for t in all_targets()}):
        console.print(f"  {backend}: {describe(backend)}")
    return 0


def _compile(args, console) -> list[dict]:
    from rich.table import Table

    from .compile import compile_targets
    from .errors import FidelityGateError

    try:
        with _status(console, "compiling") as status:
            records = compile_targets(
                args.dir,
                args.target,
                allow_cpu_fallback=args.allow_cpu_fallback,
                sim_samples=args.sim_samples,
                num_calib=args.num_calib,
                allow_small_calibration=args.allow_small_calibration,
                gate=gate_from(args),
                progress=status,
                backend_options={
                    "aihub_runtime": args.aihub_runtime,
                    "aihub_quantize": args.aihub_quantize,
                    "aihub_timeout_s": args.aihub_timeout,
                },
            )
    except FidelityGateError:
        _fidelity_table(console, args.dir)
        raise
    table = Table(title=f"compiled artifacts in {_e(args.dir)}")
    for col in ("artifact", "target", "size MB", "ops on NPU", "ops off NPU", "on-device ms"):
        table.add_column(col, no_wrap=col == "artifact")
    for r in records:
        ops, device = r.get("ops", {}), r.get("device_profile", {})
        table.add_row(
            _e(r["path"]),
            r["target"],
            f"{r['size_bytes'] / 1e6:.2f}",
            str(ops.get("htp", ops.get("npu", "-"))),
            str(ops.get("cpu", "-")),
            str(device.get("inference_ms", "-")),
        )
    console.print(table)
    if records:
        _fidelity_table(console, args.dir)
    return records


def _bundle(args, console) -> dict:
    from .bundle import bundle

    with _status(console, "bundling") as status:
        result = bundle(
            args.dir,
            args.app,
            target=args.target_for_bundle,
            with_image_encoder=getattr(args, "with_image_encoder", False),
            budget_mb=getattr(args, "budget_mb", 100.0),
            allow_over_budget=getattr(args, "allow_over_budget", False),
            progress=status,
        )
    text = result["encoders"]["text"]
    console.print(
        f"bundle: {_e(result['assets'])} ({len(result['files'])} files, {result['written']} written): "
        f"{_e(text['file'])} on {text['runtime']}/{text['accelerator']}, {result['index']['count']} images "
        f"({result['thumbnails']['count']} thumbnails), "
        f"resident estimate {result['budget']['resident_estimate_mb']} MB"
    )
    return result


def _short_query(args, console, optional: bool = False) -> dict | None:
    from .errors import ParityError, UnsupportedStudentError
    from .export.short_query import export_short_query

    try:
        with _status(console, "short-query encoder") as status:
            record = export_short_query(args.dir, buckets=_buckets(args), progress=status)
    except (UnsupportedStudentError, ParityError) as e:
        if not optional:
            raise
        console.print(f"short-query encoder: skipped ({_e(e)})")
        return None
    from .manifest import read_manifest

    p = record["dynamic_length"]["parity"]
    if not record["dynamic_length"]["cut_after_eot"]:
        cut = read_manifest(args.dir)["text"]["short_query"]["cut_parity"]
        console.print(
            f"short-query encoder: {record['path']} fed every position (bidirectional text tower: cut after "
            f"EOT it had min cosine {cut['cosine_min']:.4f}); min cosine {p['cosine_min']:.7f} vs the "
            f"full-length model over {p['samples']} captions"
        )
        return record
    console.print(
        f"short-query encoder: {record['path']} (min cosine {p['cosine_min']:.7f} vs the full-length model "
        f"over {p['samples']} captions, "
        f"{p['mean_tokens']} of {p['context_length']} tokens on average)"
    )
    for b in read_manifest(args.dir)["text"].get("length_buckets", []):
        console.print(
            f"  {b['tokens']}-token bucket: {b['path']} (holds {b['parity']['covers']:.0%} of the captions; "
            f"min cosine {b['parity']['cosine_min']:.7f} on those)"
        )
    return record


def _buckets(args) -> tuple[int, ...] | None:
    chosen = getattr(args, "buckets", None)
    return None if chosen is None else tuple(b for b in chosen if b > 0)


def _golden(args, console) -> None:
    from .bundle.golden import write_golden

    counts = write_golden(args.dir, args.out)
    console.print(f"golden vectors in {_e(args.out)}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _report(args, console) -> None:
    from .report import write_report

    outputs = write_report(args.dir)
    console.print("report: " + ", ".join(_e(p) for p in outputs.values()))


def _summary(console, manifest: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{_e(manifest['student']['id'])} -> {_e(out)}")
    for col in ("artifact", "format", "precision", "size MB", "parity min cos", "status"):
        table.add_column(col)
    for a in manifest["artifacts"]:
        p = a.get("parity", {})
        table.add_row(
            _e(a["path"]),
            a["format"],
            a["precision"],
            f"{a['size_bytes'] / 1e6:.1f}",
            f"{p['cosine_min']:.7f}" if p else "-",
            "[green]ok[/]" if p.get("passed", True) else "[red]parity miss[/]",
        )
    console.print(table)
    for failure in manifest["export"].get("parity_failures", []):
        console.print(f"[yellow]warning:[/] {_e(failure)}")


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
        f"student written to {_e(out)}: held-out t2i R@1 {r['t2i_r1']:.3f}, R@10 {r['t2i_r10']:.3f} "
        f"({card['train_seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
