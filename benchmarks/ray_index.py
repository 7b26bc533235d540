"""Gallery indexing throughput: the local engine vs Ray Data with 1 and 2 workers, on this host.

    .venv/bin/python benchmarks/ray_index.py --dir mcad-out [--repeat 3]

Indexes DIR's gallery (the embedded student's 1,000 held-out scenes after `mcad-export run`) with the fp32
image encoder through the typed API: once locally (one process, ONNX Runtime on all cores), then on a local
Ray cluster (started once; its start-up is reported apart) with 1 and 2 actors of 1 CPU each, every run on a
fresh shard folder. Reports images/s (best of --repeat), peak RSS per Ray worker, and a paper estimate of the
wall time for 10 M images on N nodes from the measured per-worker rate. Writes
benchmarks/results/ray_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray_index.json")
    args = parser.parse_args()

    import ray

    from mcad_export import stages
    from mcad_export.contract import INDEX_SHARDS_DIR
    from mcad_export.options import IndexOptions

    images = args.dir / "gallery"
    count = len(list(images.glob("*.png")))

    def timed(options: IndexOptions) -> tuple[float, dict]:
        best, meta = float("inf"), {}
        for _ in range(args.repeat):
            shutil.rmtree(args.dir / INDEX_SHARDS_DIR, ignore_errors=True)
            started = time.perf_counter()
            meta = stages.index(args.dir, options)
            best = min(best, time.perf_counter() - started)
        return best, meta

    rows = []
    seconds, _ = timed(IndexOptions(images=images))
    rows.append(
        {
            "engine": "local",
            "workers": 1,
            "threads": os.cpu_count(),
            "seconds": round(seconds, 2),
            "images_per_s": round(count / seconds, 1),
        }
    )
    started = time.perf_counter()
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}
    )
    cluster_start_s = round(time.perf_counter() - started, 2)
    try:
        for workers in (1, 2):
            seconds, meta = timed(IndexOptions(images=images, engine="ray", workers=workers, cpus_per_worker=1))
            rows.append(
                {
                    "engine": "ray",
                    "workers": workers,
                    "threads": 1,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(count / seconds, 1),
                    "peak_rss_mb_per_worker": meta["engine"]["peak_rss_mb_per_worker"],
                    "images_per_worker_busy_s": meta["engine"]["images_per_worker_busy_s"],
                    "shards": meta["engine"]["shards"],
                }
            )
    finally:
        ray.shutdown()
    # The scaling rate: what one 1-CPU actor embeds per second of work (start-up and scheduling excluded).
    per_worker = max(r["images_per_worker_busy_s"] for r in rows if r["engine"] == "ray")
    estimate = {
        f"{nodes} nodes x {cores} workers": round(10_000_000 / (per_worker * nodes * cores) / 60, 1)
        for nodes in (1, 10, 100)
        for cores in (16,)
    }
    report = {
        "gallery": str(images),
        "images": count,
        "host_cpus": os.cpu_count(),
        "cluster_start_s": cluster_start_s,
        "runs": rows,
        "per_worker_images_per_s": per_worker,
        "estimate_minutes_for_10M_images": estimate,
        "estimate_assumes": "the measured per-worker busy rate, one worker per core, linear scaling, images "
        "already on storage every node reads at that rate (decode + one 1-thread ORT session)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
