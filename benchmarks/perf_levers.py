"""Before/after of the performance levers on one export, each measured by `mcad-export bench` (1 thread, 100k gallery).

    .venv/bin/python benchmarks/perf_levers.py --dir mcad-out --name embedded
    .venv/bin/python benchmarks/perf_levers.py --dir build/perf/mc2 --name mobileclip2_s0_random \
        --before tflite/text_encoder.w8a8.tflite

Configurations (every one a full bench run in fresh processes, same code, same gallery size):
- before: the previous default deployment: `--before` text encoder (full 77-token input), flat index;
- index: the same encoder with the default index choice (IVF-PQ + exact pread re-rank at 100k);
- after: everything default: the fastest gate-passing encoder (the short-query one when the student
  is causal) and the default index.
Writes benchmarks/results/perf_<name>.json (summary rows + each run's bench.json without raw samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
KEEP = (
    "query_latency_ms",
    "query_stages_p50_ms",
    "peak_rss_mb",
    "memory_breakdown_mb",
    "gallery",
    "baseline",
    "speedup_vs_baseline",
    "physical_limit",
    "budget",
    "artifacts",
    "encoders",
    "query_tokens_mean",
    "threads",
)


def bench(directory: Path, artifact: str | None = None, index_kind: str | None = None) -> dict:
    """One bench through the typed API (as `mcad-export bench DIR --threads 1 --sweep-sizes 0 ...`)."""
    from mcad_export import stages
    from mcad_export.options import BenchOptions

    settings = BenchOptions(artifact=artifact, index_kind=index_kind, threads=(1,), sweep_sizes=())
    started = time.time()
    report = stages.bench(directory, settings)
    out = {k: report.get(k) for k in KEEP}
    out["baseline"] = {k: v for k, v in (report["baseline"] or {}).items() if k != "query_latency_samples_ms"}
    out["command"] = " ".join(
        ["mcad-export bench", str(directory), "--threads 1 --sweep-sizes 0"]
        + ([f"--artifact {artifact}"] if artifact else [])
        + ([f"--index-kind {index_kind}"] if index_kind else [])
    )
    out["wall_s"] = round(time.time() - started, 1)
    return out


def row(name: str, report: dict) -> dict:
    return {
        "config": name,
        "text_encoder": report["artifacts"]["text"]["path"],
        "index": report["gallery"]["kind"],
        "query_p50_ms": round(report["query_latency_ms"]["p50"], 3),
        "stages_p50_ms": {k: round(v, 3) for k, v in report["query_stages_p50_ms"].items()},
        "peak_rss_mb": report["peak_rss_mb"],
        "memory_breakdown_mb": report["memory_breakdown_mb"],
        "baseline_p50_ms": round(report["baseline"]["query_latency_ms"]["p50"], 2),
        "speedup_vs_baseline": report["speedup_vs_baseline"],
        "limit_ms": report["physical_limit"]["text_encoder_limit_ms"],
        "query_efficiency": report["physical_limit"]["query_efficiency"],
        "budget_passed": report["budget"]["passed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--before",
        default="tflite/text_encoder.w8a8.tflite",
        help="the text encoder the previous release deployed (full-length input)",
    )
    parser.add_argument(
        "--also",
        metavar="ARTIFACT",
        help="one more run with this text encoder and the default index (e.g. an INT8 variant the "
        "gate rejected for a random-init student: its speed, not its accuracy)",
    )
    args = parser.parse_args()
    runs = {
        "before": bench(args.dir, args.before, "flat"),
        "index": bench(args.dir, args.before),
        "after": bench(args.dir),
    }
    if args.also:
        runs["also"] = bench(args.dir, args.also)
    result = {"student": args.name, "rows": [row(k, v) for k, v in runs.items()], "runs": runs}
    out = REPO / "benchmarks" / "results" / f"perf_{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["rows"]:
        print(
            f"{r['config']:7s} {r['text_encoder']:38s} {r['index']:6s} p50 {r['query_p50_ms']:8.3f} ms  "
            f"RSS {r['peak_rss_mb']:6.1f} MB  x{r['speedup_vs_baseline']} vs eager  budget {r['budget_passed']}"
        )
    print(out)


if __name__ == "__main__":
    main()
