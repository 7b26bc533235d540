"""`mcad-export report DIR`: one profiling report from the manifest, fidelity.json and bench.json.

Writes reports/report.html (self-contained: inline CSS and SVG, no scripts or fonts fetched),
reports/report.md (for pull requests) and reports/report.json (the data both are made of).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text_atomic
from ..contract import BENCH_REPORT, FIDELITY_REPORT, REPORT_HTML, REPORT_JSON, REPORT_MD, REPORTS_DIR
from ..errors import InputError
from ..manifest import read_manifest, tool_versions


def collect(directory) -> dict:
    root = Path(directory)
    manifest = read_manifest(root)
    bench_path, fidelity_path = root / BENCH_REPORT, root / FIDELITY_REPORT
    if not bench_path.is_file():
        raise InputError(f"{root} has no {BENCH_REPORT}; run `mcad-export bench {root}` first")
    bench = json.loads(bench_path.read_text())
    fidelity = json.loads(fidelity_path.read_text()) if fidelity_path.is_file() else []
    budget = bench["budget"]
    verdict = {
        "passed": budget["passed"],
        "summary": (f"{'PASS' if budget['passed'] else 'MISS'}: query p50 {bench['query_latency_ms']['p50']:.2f} ms "
                    f"(budget {budget['latency_ms']:g} ms), peak RSS {bench['peak_rss_mb']:.1f} MB "
                    f"(budget {budget['memory_mb']:g} MB), gallery {bench['gallery_size']:,}, "
                    f"{bench['threads']} thread(s)"),
        "gate_passed": all(r.get("passed") is not False for r in fidelity) if fidelity else None,
    }
    return {
        "student": manifest["student"], "embed_dim": manifest["embed_dim"], "verdict": verdict, "bench": bench,
        "fidelity": fidelity, "recall_meaningful": manifest["evaluation"].get("recall_meaningful", False),
        "artifacts": [{k: a.get(k) for k in ("path", "encoder", "format", "runtime", "precision", "size_bytes",
                                             "size_ratio_vs_fp32")} for a in manifest["artifacts"]],
        "deployment": manifest.get("deployment"),
        "targets": compiled_targets(manifest, fidelity),
        "tools": {**manifest.get("tools", {}), **bench.get("tools", {}),
                  **tool_versions("mcad-export")},
    }


def compiled_targets(manifest: dict, fidelity: list[dict]) -> list[dict]:
    """One row per compiled artifact: where it runs, how much of it is on the NPU, and its gate result."""
    gate = {r["artifact"]: r for r in fidelity}
    rows = []
    for a in manifest["artifacts"]:
        if "target" not in a:
            continue
        record = gate.get(a["path"], {})
        rows.append({"target": a["target"], "chip": a["soc"]["name"], "artifact": a["path"], "encoder": a["encoder"],
                     "precision": a["precision"], "size_bytes": a["size_bytes"], "ops": a.get("ops"),
                     "measured_on": record.get("runtime"), "samples": record.get("samples"),
                     "cosine_mean": record.get("cosine_mean"), "passed": record.get("passed")})
    return rows


def write_report(directory) -> dict[str, Path]:
    from .markdown import render_markdown
    from .page import render_html

    root = Path(directory)
    data = collect(root)
    (root / REPORTS_DIR).mkdir(exist_ok=True)
    outputs = {"html": root / REPORT_HTML, "md": root / REPORT_MD, "json": root / REPORT_JSON}
    write_text_atomic(outputs["json"], json.dumps(data, indent=1) + "\n")
    write_text_atomic(outputs["md"], render_markdown(data))
    write_text_atomic(outputs["html"], render_html(data))
    return outputs
