"""Sizes and single-thread latencies of every exported/quantized variant of one student.

    .venv/bin/python benchmarks/quantization_variants.py --student open_clip:MobileCLIP2-S0 --random-init
    .venv/bin/python benchmarks/quantization_variants.py            # the embedded student

Exports (ONNX + TFLite), quantizes every precision, then times each artifact at batch 1 with one
thread (ONNX Runtime: intra_op_num_threads=1; LiteRT: num_threads=1), median of --repeats after
warm-up. Writes benchmarks/results/<name>.json. For random-init students the accuracy columns are
labelled meaningless: only sizes and latencies are informative there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def time_onnx(path, feed, repeats, artifact):
    from mcad_export.runtime.encoders import onnx_session, ort_optimization

    session = onnx_session(path, threads=1, optimization=ort_optimization(artifact))
    return _timed(lambda: session.run(None, feed), repeats)


def time_tflite(path, feed, repeats, artifact):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")
    return _timed(lambda: runner(**feed), repeats)


def _timed(fn, repeats):
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": round(statistics.median(samples), 3), "min_ms": round(min(samples), 3), "repeats": repeats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=None)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--samples", type=int, default=None, help="evaluation/tuning samples (export --samples)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--work", type=Path, default=REPO / "build" / "bench-variants")
    parser.add_argument("--name", default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="keep an existing export+quantize in --work; verify and time"
    )
    args = parser.parse_args()

    name = args.name or (args.student or "embedded").replace(":", "_").replace("/", "_")
    out = args.work / name
    cli = [sys.executable, "-m", "mcad_export"]
    student = (["--student", args.student] if args.student else []) + (["--random-init"] if args.random_init else [])
    samples = ["--samples", str(args.samples)] if args.samples else []
    timings = {}
    steps = [
        ("export", [*cli, "export", "--out", str(out), *student, *samples]),
        ("quantize", [*cli, "quantize", str(out), *(["--no-auto"] if args.random_init else [])]),
        ("verify", [*cli, "verify", str(out)]),
    ]
    if args.reuse and (out / "manifest.json").is_file():
        steps = steps[2:]
    for step, cmd in steps:
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        timings[step] = round(time.perf_counter() - start, 1)
        if proc.returncode not in (0, 4):  # 4 = a gate miss, expected for random weights
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode

    manifest = json.loads((out / "manifest.json").read_text())
    fidelity = {r["artifact"]: r for r in json.loads((out / "reports" / "fidelity.json").read_text())}
    size = manifest["image"]["image_size"]
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((1, 3, size, size)).astype(np.float32)}
    from mcad_export.runtime import Tokenizer

    feeds["text"] = Tokenizer.from_artifacts(out)(["a photo of a red bicycle leaning against a wall"])
    rows = []
    for a in manifest["artifacts"]:
        feed = {a["inputs"][0]["name"]: feeds[a["encoder"]]}
        timer = time_onnx if a["format"] == "onnx" else time_tflite
        record = fidelity.get(a["path"], {})
        rows.append(
            {
                "artifact": a["path"],
                "encoder": a["encoder"],
                "format": a["format"],
                "precision": a["precision"],
                "size_mb": round(a["size_bytes"] / 1e6, 2),
                **timer(out / a["path"], feed, args.repeats, a),
                "cosine_mean": record.get("cosine_mean"),
                "top10_overlap": record.get("top10_overlap"),
                "gate_passed": record.get("passed"),
            }
        )
    result = {
        "student": manifest["student"]["id"],
        "random_init": bool(manifest["student"].get("random_init")),
        "accuracy_meaningful": bool(manifest["evaluation"].get("recall_meaningful")),
        "threads": 1,
        "batch": 1,
        "text_tokens": int(manifest["text"]["context_length"]),
        "pipeline_seconds": timings,
        "rejected": manifest.get("quantization", {}).get("rejected", []),
        "rows": rows,
    }
    dest = REPO / "benchmarks" / "results" / f"quantization_variants_{name}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
