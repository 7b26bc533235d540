"""The fidelity gate's records of a finished run, committed as the file behind docs/quantization.md's gate tables.

    .venv/bin/python benchmarks/gate_results.py --dir mcad-out --name embedded

Writes benchmarks/results/<name>_gate.json: every artifact's gate record (reports/fidelity.json) with its file
size and size ratio vs its fp32 source, plus the variants quantize rejected (their last tuning numbers). docs/quantization.md's
tables are rendered from it by scripts/tables.py; tests/test_tables.py checks they agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEEP = (
    "artifact",
    "encoder",
    "runtime",
    "precision",
    "passed",
    "samples",
    "cosine_mean",
    "cosine_min",
    "cosine_p1",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "recall_at_1_fp32",
    "top10_overlap",
    "r1_paired",
    "degenerate",
    "misses",
)


def collect(folder: Path) -> dict:
    from mcad_export.manifest import read_manifest, total_bytes
    from mcad_export.records import read_fidelity

    manifest = read_manifest(folder)
    artifacts = {a["path"]: a for a in manifest["artifacts"]}
    records = []
    for record in read_fidelity(folder):
        artifact = artifacts.get(record["artifact"])
        if artifact is None:
            continue
        records.append(
            {
                **{k: record[k] for k in KEEP if k in record},
                "size_bytes": total_bytes(artifact),
                "size_ratio_vs_fp32": artifact.get("size_ratio_vs_fp32", 1.0),
            }
        )
    rejected = [
        {"artifact": r["path"], "last_step": r["last_step"], "steps": len(r["steps"])}
        for r in (manifest.get("quantization") or {}).get("rejected", [])
    ]
    return {
        "student": manifest["student"]["id"],
        "evaluation": manifest["evaluation"],
        "records": records,
        "rejected": rejected,
        "tools": manifest.get("tools", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="a finished run's folder")
    parser.add_argument("--name", required=True, help="results/<name>_gate.json")
    args = parser.parse_args()
    out = REPO / "benchmarks" / "results" / f"{args.name}_gate.json"
    out.write_text(json.dumps(collect(args.dir), indent=1) + "\n", encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
