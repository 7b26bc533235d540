"""End-to-end search latency and memory per student and text-encoder precision, and index latency vs gallery size.

    .venv/bin/python benchmarks/search_latency.py                       # all three students
    .venv/bin/python benchmarks/search_latency.py --students embedded   # one

Students: the embedded student, a random-init MobileCLIP2-S0 and a random-init ViT-B-32 (no
weights can be downloaded here; latency and memory do not depend on the weights' values, accuracy
does and is not reported for them). Each is exported and quantized once under --work (reused when
present), then `mcad-export bench --artifact A` runs for every host-runnable text-encoder artifact
with a --gallery-size gallery (synthetic beyond the real embeddings) and one thread; the index
sweep (flat / sq8 / ivfpq at --sweep-sizes) runs once per student. Writes
benchmarks/results/search_<student>.json; benchmarks/README.md holds the tables made from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STUDENTS = {
    "embedded": {"export": [], "quantize": []},
    "mobileclip2_s0_random": {"export": ["--student", "open_clip:MobileCLIP2-S0", "--random-init"], "quantize": []},
    # ViT-B-32's text tower is MobileCLIP2-S0's size; two precisions keep the sweep within an hour.
    "vit_b_32_random": {
        "export": ["--student", "open_clip:ViT-B-32", "--random-init", "--no-tflite"],
        "quantize": ["--precision", "dynamic", "--precision", "w8a8"],
        "sweep": False,
    },  # same 512-d index as MobileCLIP2-S0: its sweep applies
}


def cli(*args) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mcad_export", *map(str, args)], cwd=REPO, text=True, capture_output=True
    )
    if proc.returncode not in (0, 6):
        sys.exit(f"mcad-export {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")


def prepare(name: str, work: Path) -> Path:
    out = work / name
    if (out / "manifest.json").is_file() and (out / "reports" / "fidelity.json").is_file():
        return out
    spec = STUDENTS[name]
    cli("export", "--out", out, *spec["export"])
    cli("quantize", out, *spec["quantize"])
    subprocess.run([sys.executable, "-m", "mcad_export", "verify", out], cwd=REPO)  # random-init: cosine-only gate
    return out


def bench_student(name: str, out: Path, gallery_size: int, sweep: str) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    texts = [
        a["path"] for a in manifest["artifacts"] if a["encoder"] == "text" and a["runtime"] in ("onnxruntime", "litert")
    ]
    rows, sweep_rows, baseline = [], None, None
    for i, artifact in enumerate(texts):
        first = i == 0
        sweep_here = sweep if first and STUDENTS[name].get("sweep", True) else "0"
        cli(
            "bench",
            out,
            "--artifact",
            artifact,
            "--gallery-size",
            gallery_size,
            "--quick",
            "--sweep-sizes",
            sweep_here,
            *([] if first else ["--no-baseline"]),
        )
        bench = json.loads((out / "reports" / "bench.json").read_text())
        if first:
            baseline, sweep_rows = bench["baseline"], (bench["index_sweep"] or {}).get("rows")
            physical = bench["physical_limit"]
        a = bench["artifacts"]["text"]
        rows.append(
            {
                "artifact": artifact,
                "precision": a["precision"],
                "runtime": a["runtime"],
                "size_mb": round(a["size_bytes"] / 1e6, 2),
                "gate_passed": a["gate_passed"],
                "query_p50_ms": round(bench["query_latency_ms"]["p50"], 3),
                "query_p99_ms": round(bench["query_latency_ms"]["p99"], 3),
                "encode_p50_ms": round(bench["query_stages_p50_ms"]["encode_ms"], 3),
                "search_p50_ms": round(bench["query_stages_p50_ms"]["search_ms"], 3),
                "peak_rss_mb": bench["peak_rss_mb"],
                "budget_passed": bench["budget"]["passed"],
                "speedup_vs_baseline": round(baseline["query_latency_ms"]["p50"] / bench["query_latency_ms"]["p50"], 2),
            }
        )
        print(f"{name} {artifact}: p50 {rows[-1]['query_p50_ms']} ms, {rows[-1]['peak_rss_mb']} MB", flush=True)
    return {
        "student": manifest["student"]["id"],
        "random_init": manifest["student"].get("random_init", False),
        "gallery_size": gallery_size,
        "threads": 1,
        "baseline": {k: baseline[k] for k in ("name", "description", "query_latency_ms", "peak_rss_mb")},
        "physical_limit": physical,
        "text_encoders": rows,
        "index_sweep": sweep_rows,
        "tools": bench["tools"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated: " + ", ".join(STUDENTS))
    parser.add_argument("--gallery-size", type=int, default=100_000)
    parser.add_argument("--sweep-sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "bench-search")
    args = parser.parse_args()
    for name in args.students.split(","):
        started = time.time()
        work = args.work
        reused = REPO / "build" / "bench-variants" / name  # quantization_variants.py's export, if present
        out = reused if (reused / "reports" / "fidelity.json").is_file() else prepare(name, work)
        result = bench_student(name, out, args.gallery_size, args.sweep_sizes)
        result["seconds"] = round(time.time() - started, 1)
        path = REPO / "benchmarks" / "results" / f"search_{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
