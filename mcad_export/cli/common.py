"""What several commands share: argument groups, the option builders that turn them into options dataclasses
(whose defaults live in options.py), and the progress spinner."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..defaults import AIHUB_TIMEOUT_S, BUDGET_MB, BUDGET_MS, NUM_CALIB, SIM_SAMPLES
from ..options import (
    BenchOptions,
    CompileOptions,
    ExportOptions,
    IndexOptions,
    QuantizeOptions,
    StudentOptions,
)


def _add_student_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--student",
        metavar="SPEC",
        help="open_clip:<ARCH> | open_clip:<config.json> (Hugging Face text towers, XLM-R / mT5 / NLLB, read their "
        "config and tokenizer files from a local <model name>/ folder beside it or --weights) | hf:<DIR> (CLIPModel, SiglipModel, Siglip2Model, "
        "ChineseCLIPModel or VisionTextDualEncoderModel) | cn_clip:<MODEL> (a Chinese-CLIP checkpoint: ViT-B-16, RN50, "
        "... or <vision>@<text> configs) | dual:<spec.json> (vision + BERT-family text) | embedded:minilm "
        "(packaged, real MiniLM text tower) | embedded:siglip (packaged SigLIP, SentencePiece) | embedded:zh "
        "(packaged Chinese-CLIP-style, Chinese and English captions); "
        "default: the embedded student",
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
    from ..quantize.onnx_recipes import DEFAULT_PRECISIONS, PRECISIONS

    p.add_argument(
        "--precision",
        action="append",
        choices=PRECISIONS,
        metavar="P",
        help=f"one of {', '.join(PRECISIONS)}; repeatable (default: {', '.join(DEFAULT_PRECISIONS)}; w4 is opt-in)",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=("onnx", "tflite"),
        dest="formats",
        help="quantize only these formats' fp32 encoders; repeatable (default: both; a 1 GB TFLite twin's recipes "
        "can be rerun without redoing the ONNX ones)",
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
    from ..quantize.fidelity import DEFAULT_GATE as g

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
    from ..runtime.index import INDEX_KINDS

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
    from ..bench import DEFAULT_GALLERY_SIZE, DEFAULT_SWEEP_SIZES

    p.add_argument(
        "--artifact",
        metavar="PATH",
        help="text-encoder artifact (default: the fastest that does not miss the fidelity gate)",
    )
    p.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        choices=("onnxruntime", "litert"),
        help="deploy a text encoder of this runtime only (repeatable; default: any). The offline APK build runs "
        "onnxruntime, which `run --apk` picks by itself",
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
    from ..quantize.fidelity import Gate

    return Gate(
        max_r1_drop=args.max_r1_drop / 100,
        min_top10_overlap=args.min_top10_overlap,
        min_cosine_mean=args.min_cosine_mean,
        min_cosine_min=args.min_cosine_min,
        degenerate_pairwise_cosine=args.degenerate_pairwise_cosine,
        min_cosine_floor=args.min_cosine_floor,
        r1_alpha=args.r1_alpha,
    )


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
        formats=tuple(args.formats) if args.formats else ("onnx", "tflite"),
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
        runtimes=tuple(args.runtimes or ()),
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
