"""Markdown tables from benchmarks/results/search_*.json (what benchmarks/README.md shows).

.venv/bin/python benchmarks/search_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def student_label(result: dict) -> str:
    return result["student"] + (" (random init)" if result["random_init"] else "")


def main() -> None:
    results = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("search_*.json"))]
    print(
        "| student | text encoder | size MB | encoder p50 ms | top-10 p50 ms | query p50 ms | query p99 ms "
        "| peak RSS MB | PyTorch p50 ms | speed-up | budget |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        name = student_label(r)
        base = r["baseline"]["query_latency_ms"]["p50"]
        for t in r["text_encoders"]:
            print(
                f"| {name} | `{t['artifact']}` | {t['size_mb']} | {t['encode_p50_ms']:.2f} | {t['search_p50_ms']:.2f} "
                f"| {t['query_p50_ms']:.2f} | {t['query_p99_ms']:.2f} | {t['peak_rss_mb']:.0f} | {base:.1f} "
                f"| {t['speedup_vs_baseline']:.2f}x | {'pass' if t['budget_passed'] else 'miss'} |"
            )
    print()
    print(
        "| gallery drawn around | dim | gallery | index | p50 ms | p99 ms | scanned MB | top-10 overlap vs exact "
        "| build s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        name = student_label(r)
        for row in r.get("index_sweep") or []:
            dim = row["float_bytes"] // row["gallery_size"] // 4
            overlap = "-" if row["top10_overlap_vs_flat"] is None else f"{row['top10_overlap_vs_flat']:.3f}"
            print(
                f"| {name} | {dim} | {row['gallery_size']:,} | {row['kind']} | {row['search_latency_ms']['p50']:.3f} "
                f"| {row['search_latency_ms']['p99']:.3f} | {row['scan_bytes'] / 1e6:.1f} | {overlap} "
                f"| {row['build_s']:.1f} |"
            )


if __name__ == "__main__":
    main()
