"""`mcad-export report DIR`: one profiling report from the manifest, fidelity.json and bench.json.

Writes reports/report.html (self-contained: inline CSS and SVG, no scripts or fonts fetched),
reports/report.md (for pull requests) and reports/report.json (the data both are made of).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import locks_folder, write_text_atomic
from ..compile.aihub import device_profile_checks
from ..contract import BENCH_REPORT, DEVICE_BENCH, REPORT_HTML, REPORT_JSON, REPORT_MD
from ..errors import InputError
from ..manifest import read_manifest, tool_versions, total_bytes
from ..records import read_bench, read_fidelity


def collect(directory) -> dict:
    root = Path(directory)
    manifest = read_manifest(root)
    bench = read_bench(root)
    if bench is None:
        raise InputError(f"{root} has no {BENCH_REPORT}; run `mcad-export bench {root}` first")
    fidelity = read_fidelity(root)
    budget = bench["budget"]
    # Device profiles are read live from the manifest: a compile after the bench still counts.
    device = device_profile_checks(manifest, budget["latency_ms"], budget["memory_mb"])
    passed = budget["latency_passed"] and budget["memory_passed"] and all(d["passed"] for d in device)
    verdict = {
        "passed": passed,
        "summary": (
            f"{'PASS' if passed else 'MISS'}: query p50 {bench['query_latency_ms']['p50']:.2f} ms "
            f"(budget {budget['latency_ms']:g} ms), peak RSS {bench['peak_rss_mb']:.1f} MB "
            f"(budget {budget['memory_mb']:g} MB), gallery {bench['gallery_size']:,}, "
            f"{bench['threads']} thread(s)" + "".join(_device_line(d) for d in device)
        ),
        "device_profiles": device,
        "gate_passed": all(r.get("passed") is not False for r in fidelity) if fidelity else None,
    }
    return {
        "student": manifest["student"],
        "embed_dim": manifest["embed_dim"],
        "verdict": verdict,
        "bench": bench,
        "fidelity": fidelity,
        "gate_sensitivity": gate_sensitivity(fidelity),
        "retrieval": retrieval_examples(root, manifest, fidelity),
        "apk": apk_record(root),
        "device_bench": device_bench_record(root, budget),
        "recall_meaningful": manifest["evaluation"].get("recall_meaningful", False),
        "artifacts": [
            {
                **{k: a.get(k) for k in ("path", "encoder", "format", "runtime", "precision", "size_ratio_vs_fp32")},
                "size_bytes": total_bytes(a),
            }
            for a in manifest["artifacts"]
        ],
        "deployment": manifest.get("deployment"),
        "targets": compiled_targets(manifest, fidelity),
        "tools": {**manifest.get("tools", {}), **bench.get("tools", {}), **tool_versions("mcad-export")},
    }


def _device_line(check: dict) -> str:
    npu = (
        "all layers on the NPU"
        if not check["layers_off_npu"]
        else f"{check['layers_off_npu']} layer(s) off the NPU{' (allowed)' if check['allowed_off_npu'] else ''}"
    )
    return (
        f"; {check['encoder']} encoder on {check['device']} ({check['target']}): {check['inference_ms']} ms, "
        f"peak {check['peak_memory_mb']} MB, {npu}{'' if check['passed'] else ' - MISS'}"
    )


def retrieval_examples(root: Path, manifest: dict, fidelity: list[dict]) -> dict | None:
    from .retrieval import examples

    return examples(root, manifest, fidelity)


def device_bench_record(root: Path, budget: dict) -> dict | None:
    """The kept device-bench.json, checked again (the folder is untrusted), with its verdict vs the budget."""
    import os

    from ..manifest import read_json_inside
    from . import device

    if not os.path.lexists(root / DEVICE_BENCH):
        return None
    record = device.check(read_json_inside(root, DEVICE_BENCH, 1 << 20, "run report --device-bench again"), root)
    return {"record": record, "verdict": device.verdict(record, budget["latency_ms"], budget["memory_mb"])}


def apk_record(root: Path) -> dict | None:
    """DIR/apk/apk.json when `mcad-export apk` built the app (None otherwise)."""
    import os

    from ..contract import APK_RECORD
    from ..manifest import read_json_inside

    if not os.path.lexists(root / APK_RECORD):
        return None
    record = read_json_inside(root, APK_RECORD, 1 << 20, f"rebuild it with `mcad-export apk {root}`")
    if not isinstance(record, dict) or not isinstance(record.get("size_breakdown_bytes"), dict):
        raise InputError(f"{root / APK_RECORD} is not a record `mcad-export apk` wrote; rebuild it")
    return record


def gate_sensitivity(fidelity: list[dict]) -> str | None:
    """How large an R@1 drop this sample can call damage (the paired test's smallest detectable drop)."""
    paired = next((r["r1_paired"] for r in fidelity if r.get("r1_paired") and not r.get("degenerate")), None)
    if paired is None:
        return None
    return (
        f"With {paired['samples']:,} held-out captions, the paired R@1 test (exact McNemar on the captions whose hit "
        f"flips, alpha {paired['alpha']:g}) can call a drop of {100 * paired['min_detectable_drop']:.1f} points or "
        "more damage when every flip is a loss; a smaller drop, or one the gained captions balance, is within this "
        "sample's noise. Each artifact must also keep every sample's cosine above the floor."
    )


def compiled_targets(manifest: dict, fidelity: list[dict]) -> list[dict]:
    """One row per compiled artifact: where it runs, how much of it is on the NPU, and its gate result."""
    gate = {r["artifact"]: r for r in fidelity}
    rows = []
    for a in manifest["artifacts"]:
        if "target" not in a:
            continue
        record = gate.get(a["path"], {})
        ops, profile = a.get("ops") or {}, a.get("device_profile") or {}
        rows.append(
            {
                "target": a["target"],
                "chip": a["soc"]["name"],
                "artifact": a["path"],
                "encoder": a["encoder"],
                "precision": a["precision"],
                "size_bytes": a["size_bytes"],
                "ops_on_npu": ops.get("htp", ops.get("npu")),
                "ops_off_npu": ops.get("cpu"),
                "measured_on": record.get("runtime") if record.get("passed") is not None else None,
                "samples": record.get("samples"),
                "cosine_mean": record.get("cosine_mean"),
                "passed": record.get("passed"),
                "device": profile.get("device"),
                "device_inference_ms": profile.get("inference_ms"),
                "device_peak_memory_mb": profile.get("peak_memory_mb"),
                "host_table": host_table_line(a),
            }
        )
    return rows


def host_table_line(artifact: dict) -> str | None:
    """What a text graph that starts at the embeddings leaves to the host (compile/host_gather.py), in one line."""
    host = artifact.get("host_gather")
    if not host:
        return None
    context = artifact["inputs"][0]["shape"][1]
    return (
        f"{artifact['path']} starts at the embeddings: its {host['rows']:,} x {host['width']} token table is looked "
        f"up on the host (int8 rows, {host['bytes'] / 2**20:.2f} MB memory-mapped, at most "
        f"{context * (host['width'] + 4) / 1024:.1f} KB read per query; int8 rows vs the whole graph: min cosine "
        f"{host['parity']['int8_rows_min_cosine']})"
    )


@locks_folder("report")
def write_report(directory, device_bench=None) -> dict[str, Path]:
    """`device_bench`: a device-bench.json from the app; checked, then kept as reports/device-bench.json."""
    from . import device
    from .markdown import render_markdown
    from .page import render_html

    root = Path(directory)
    if device_bench is not None:
        record = device.read(device_bench)
        write_text_atomic(root / DEVICE_BENCH, json.dumps(record, indent=1) + "\n", root=root)
    data = collect(root)
    outputs = {"html": root / REPORT_HTML, "md": root / REPORT_MD, "json": root / REPORT_JSON}
    write_text_atomic(outputs["json"], json.dumps(data, indent=1) + "\n", root=root)
    write_text_atomic(outputs["md"], render_markdown(data), root=root)
    write_text_atomic(outputs["html"], render_html(data), root=root)
    return outputs
