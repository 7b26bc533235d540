"""Issue 13's goals, measured: real-size text towers at the search budget on one CPU core.

    .venv/bin/python benchmarks/train_clip_size_student.py        # once: the trained CLIP-size student
    .venv/bin/python benchmarks/goal_bench.py                     # all three students below
    .venv/bin/python benchmarks/goal_bench.py --students clip_size_scenes
    .venv/bin/python benchmarks/goal_bench.py --students vit_b_16_siglip2_random   # SigLIP 2 B/16, 256k vocab

Per student (exported, short-queried, quantized and verified once under --work, reused when present, through
the typed API: `mcad_export.stages` with `mcad_export.options`): one bench at 1 thread without the sweep (as
`mcad-export bench --threads 1 --sweep-sizes 0`) with the defaults (100,000-image gallery, the fastest text
encoder that passes the fidelity gate, the PyTorch eager baseline in the same run), then one
`--no-baseline` run per other text-encoder variant. Each row is judged against the goals: query p50 <= 8 ms,
peak RSS <= 100 MB, >= 15x eager and text encoder within 1.5x of its roofline limit (causal CLIP-size
towers); within 1.3x of the INT8 compute floor at 77 tokens (MobileCLIP2-S0). Writes
benchmarks/results/goal_<student>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcad_export import stages  # noqa: E402
from mcad_export.errors import FidelityGateError  # noqa: E402
from mcad_export.options import (  # noqa: E402
    DEFAULT_GATE,
    BenchOptions,
    ExportOptions,
    QuantizeOptions,
    ShortQueryOptions,
    StudentOptions,
)

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "mcad-export" / "clip-size-student"
INTEGER = QuantizeOptions(precisions=("dynamic", "w8", "w4"))
STUDENTS = {
    "vit_b_32_random": {
        "student": StudentOptions("open_clip:ViT-B-32", random_init=True),
        "quantize": INTEGER,
        "goal": "causal",
    },
    "clip_size_scenes": {
        "student": StudentOptions(f"open_clip:{CACHE / 'open_clip_config.json'}", CACHE / "student.safetensors"),
        "quantize": INTEGER,
        "goal": "causal",
    },
    # bidirectional: every query runs all 77 positions (the one-query graph fed every position); w8/w4 win only
    # at a few tokens, and dyntok is timed to show what per-token quantization costs at 77. With TFLite twins:
    # the one-query graph's static TFLite twin runs on XNNPACK.
    "mobileclip2_s0_random": {
        "student": StudentOptions("open_clip:MobileCLIP2-S0", random_init=True),
        "quantize": QuantizeOptions(precisions=("dynamic", "dyntok")),
        "goal": "full_context",
        "tflite": True,
    },
    # SigLIP 2 B/16 (issue 30): bidirectional like MobileCLIP 2, every query runs all 64 positions; a 256,000-row
    # token table (int8 rows in the encoder, only a query's rows read). Its folder (open_clip's config + a 256k
    # Gemma-style tokenizer) is written under --work by benchmarks/siglip2_student.py.
    "vit_b_16_siglip2_random": {
        "student": None,
        "quantize": QuantizeOptions(precisions=("dynamic",)),
        "goal": "full_context",
    },
}
GOALS = {"query_p50_ms": 8.0, "peak_rss_mb": 100.0, "speedup": 15.0, "floor_ratio": 1.5, "full_context_ratio": 1.3}


def host() -> dict:
    """The CPU the numbers were measured on: peaks and the int8 kernels ONNX Runtime picks differ per host."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu": model, "cores": os.cpu_count(), "int8_features": [f for f in wanted if f in flags]}


def timed(label: str, fn, *args):
    started = time.time()
    value = fn(*args)
    print(f"  {label} ... {time.time() - started:.0f} s", flush=True)
    return value


def student_options(name: str, work: Path) -> StudentOptions:
    if name == "vit_b_16_siglip2_random":
        from siglip2_student import build

        return StudentOptions(f"open_clip:{build(work / 'siglip2-student')}", random_init=True)
    return STUDENTS[name]["student"]


def prepare(name: str, out: Path) -> None:
    spec = STUDENTS[name]
    if not (out / "manifest.json").is_file():
        student = student_options(name, out.parent)
        timed("export", stages.export, out, student, ExportOptions(tflite=spec.get("tflite", False)))
    manifest = json.loads((out / "manifest.json").read_text())
    # Causal towers: the encoder cut after EOT. Bidirectional ones: the same one-query graph fed every position
    # (no Reshape around each Linear; the last block's query, output projection and MLP on the pooled row only).
    if not any(a.get("dynamic_length") for a in manifest["artifacts"]):
        timed("short-query", stages.short_query, out, ShortQueryOptions(buckets=(), required=True))
        manifest = json.loads((out / "manifest.json").read_text())
    if not any(a["precision"] != "fp32" for a in manifest["artifacts"]):
        timed("quantize", stages.quantize, out, spec["quantize"], DEFAULT_GATE)
    if not (out / "reports" / "fidelity.json").is_file():
        try:
            timed("verify", stages.verify, out, DEFAULT_GATE)
        except FidelityGateError:
            pass  # a variant that misses the gate is reported, and the bench skips it


SETTINGS = BenchOptions(threads=(1,), sweep_sizes=())


def bench(out: Path, artifact: str | None = None, baseline: bool = True) -> dict:
    return timed("bench", stages.bench, out, replace(SETTINGS, artifact=artifact, baseline=baseline))


def row(report: dict, baseline_ms: float, goal: str) -> dict:
    text = report["artifacts"]["text"]
    limit = report["physical_limit"]
    encode = report["query_stages_p50_ms"]["encode_ms"]
    p50 = report["query_latency_ms"]["p50"]
    per = limit["text_encoder"] if limit["text_encoder"]["artifact"] == text["path"] else {}
    out = {
        "text_encoder": text["path"],
        "precision": text["precision"],
        "gate_passed": text.get("gate_passed"),
        "query_p50_ms": round(p50, 3),
        "stages_p50_ms": {k: round(v, 3) for k, v in report["query_stages_p50_ms"].items()},
        "peak_rss_mb": report["peak_rss_mb"],
        "speedup_vs_eager": round(baseline_ms / p50, 2),
        "encoder_limit_ms": per.get("limit_ms", limit.get("text_encoder_limit_ms")),
        "encoder_bound": per.get("bound"),
        "encoder_times_limit": per.get("times_limit"),
        "encode_over_limit": None,
        "index": report["gallery"]["kind"],
    }
    if out["encoder_limit_ms"]:
        out["encode_over_limit"] = round(encode / out["encoder_limit_ms"], 2)
    checks = {
        "query_p50_ms": p50 <= GOALS["query_p50_ms"],
        "peak_rss_mb": out["peak_rss_mb"] <= GOALS["peak_rss_mb"],
        "speedup": out["speedup_vs_eager"] >= GOALS["speedup"],
        "gate": bool(out["gate_passed"]),
    }
    ratio = GOALS["floor_ratio"] if goal == "causal" else GOALS["full_context_ratio"]
    # the encoder timed alone (bench's ranking) against its roofline; encode_over_limit is the in-query stage
    times = out["encoder_times_limit"] or out["encode_over_limit"]
    checks["floor_ratio"] = times is not None and times <= ratio
    out["goals"] = checks
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated: " + ", ".join(STUDENTS))
    parser.add_argument("--work", type=Path, default=REPO / "build" / "goal")
    parser.add_argument("--tag", default="", help="suffix of the result file (goal_<student><tag>.json), e.g. _epyc")
    parser.add_argument(
        "--prepare-only", action="store_true", help="export, quantize and verify only (no timing: may share the CPU)"
    )
    args = parser.parse_args()
    for name in args.students.split(","):
        started = time.time()
        out = args.work / name
        print(name, flush=True)
        if name == "clip_size_scenes" and not (CACHE / "card.json").is_file():
            sys.exit(f"{CACHE} has no trained student: run benchmarks/train_clip_size_student.py first")
        prepare(name, out)
        if args.prepare_only:
            continue
        default = bench(out)
        baseline_ms = default["baseline"]["query_latency_ms"]["p50"]
        rows = [row(default, baseline_ms, STUDENTS[name]["goal"])]
        manifest = json.loads((out / "manifest.json").read_text())
        # The default run's ranking already times every encoder alone; end to end, the rest of the one-query
        # variants (causal) or every host text encoder (bidirectional: there is no one-query variant).
        causal = STUDENTS[name]["goal"] == "causal"
        for a in manifest["artifacts"]:
            if (
                a["encoder"] == "text"
                and a["runtime"] in ("onnxruntime", "litert")
                and a["path"] != rows[0]["text_encoder"]
                and (a.get("dynamic_length") or not causal)
            ):
                rows.append(row(bench(out, a["path"], baseline=False), baseline_ms, STUDENTS[name]["goal"]))
        fidelity = json.loads((out / "reports" / "fidelity.json").read_text())
        result = {
            "student": manifest["student"]["id"],
            "host": host(),
            "random_init": manifest["student"].get("random_init", False),
            "gallery_size": default["gallery_size"],
            "threads": 1,
            "goals": GOALS,
            "baseline": {k: v for k, v in default["baseline"].items() if k != "query_latency_samples_ms"},
            "physical_limit": default["physical_limit"],
            "memory_breakdown_mb": default["memory_breakdown_mb"],
            "rows": rows,
            "fidelity": fidelity,
            "seconds": round(time.time() - started, 1),
        }
        path = REPO / "benchmarks" / "results" / f"goal_{name}{args.tag}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        for r in rows:
            print(
                f"  {r['text_encoder']:34s} p50 {r['query_p50_ms']:7.3f} ms  RSS {r['peak_rss_mb']:6.1f} MB  "
                f"x{r['speedup_vs_eager']}  limit {r['encoder_limit_ms']} ms  goals {r['goals']}",
                flush=True,
            )
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
