"""The bench's steps: choose artifacts, time encoders, the query path, the baseline and the limit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..compile.aihub import device_profile_checks
from ..contract import BENCH_REPORT, INDEX_DIR, INDEX_EMBEDDINGS, INDEX_META, MANIFEST
from ..deployable import verdict
from ..errors import InputError
from ..guard import reference_embeddings, verified_artifact
from ..manifest import dump_manifest, read_manifest, tool_versions, total_bytes
from ..records import bench_json
from ..runtime.encoders import feed_options, ort_optimization
from ..runtime.index import GalleryIndex, synthetic_gallery
from ..runtime.search import HOST_RUNTIMES
from ..runtime.tokenizer import Tokenizer
from .common import Settings, query_texts, run_probe
from .flops import matmul_flops
from .roofline import index_scan_bytes, limit, weight_bytes_per_query

PROBE, BASELINE = "mcad_export.bench.probe", "mcad_export.bench.baseline"


def gate_status(root: Path) -> dict[str, dict]:
    """artifact path -> its latest fidelity record (deployable.verdict decides what may deploy)."""
    from ..deployable import latest_records

    return latest_records(root)


def sample_inputs(root: Path, manifest: dict, work: Path, queries: list[str]) -> dict[str, str]:
    ids = Tokenizer.from_artifacts(root, manifest)(queries[:1])
    size = manifest["image"]["image_size"]
    pixels = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    np.save(work / "text_input.npy", ids)
    np.save(work / "image_input.npy", pixels)
    return {"text": str(work / "text_input.npy"), "image": str(work / "image_input.npy")}


def time_encoder(root, artifact, inputs, threads, work, measure) -> dict:
    cfg = {
        "mode": "encoder",
        "path": str(verified_artifact(root, artifact)),
        "runtime": artifact["runtime"],
        "optimization": ort_optimization(artifact),
        "feed": feed_options(artifact),
        "threads": threads,
        "input": inputs[artifact["encoder"]],
        "measure": measure,
    }
    return run_probe(PROBE, cfg, threads, work)


def choose(root, manifest, encoder, wanted, gates, inputs, settings, work, say) -> tuple[dict, list[dict]]:
    """The fastest host-runnable artifact of an encoder that did not miss the gate (or `wanted`)."""
    candidates = [
        a
        for a in manifest["artifacts"]
        if a["encoder"] == encoder and a["runtime"] in HOST_RUNTIMES and not a.get("length_bucket")
    ]  # buckets take only the queries that fit them
    if settings.runtimes and encoder == "text":
        candidates = [a for a in candidates if a["runtime"] in settings.runtimes]
        if not candidates and not wanted:
            raise InputError(
                f"{root} has no text encoder for --runtime {' / '.join(settings.runtimes)}: export one for it "
                "(TFLite for litert: drop --no-tflite) or bench another runtime"
            )
    if wanted:
        from ..runtime.search import select_artifact

        candidates = [select_artifact(manifest, wanted, encoder)]
    ranking = []
    for a in candidates:
        say(f"ranking {encoder} encoders: {a['path']}")
        stats = time_encoder(root, a, inputs, settings.threads[0], work, settings.measure("selection"))["latency"]
        ranking.append(
            {
                "artifact": a["path"],
                "precision": a["precision"],
                "runtime": a["runtime"],
                "p50_ms": round(stats["p50"], 3),
                "gate_passed": verdict(a, gates)[0],
                "size_bytes": total_bytes(a),
            }
        )
    # Only what the gate passed, on a runtime that ran the file, on these bytes (deployable.py); no fallback.
    eligible = [r for r in ranking if r["gate_passed"]]
    if not eligible:
        why = {a["path"]: verdict(a, gates)[1] for a in candidates}
        raise InputError(
            f"no {encoder} encoder may deploy: "
            + "; ".join(f"{path}: {reason}" for path, reason in why.items())
            + " (only artifacts that passed the fidelity gate deploy)"
        )
    best = min(eligible, key=lambda r: r["p50_ms"])
    return next(a for a in candidates if a["path"] == best["artifact"]), sorted(ranking, key=lambda r: r["p50_ms"])


AUTO_IVFPQ_FROM = 50_000


def bench_gallery(root: Path, manifest: dict, size: int, kind: str | None, work: Path) -> tuple[Path, dict]:
    """The gallery the query path searches: the real index, extended with synthetic rows up to `size`."""
    real_index = root / INDEX_DIR
    if (real_index / INDEX_META).is_file():
        real = GalleryIndex.load(real_index)
        real_vectors, real_kind, source = np.asarray(real.embeddings), real.kind, "index/"
    else:
        real_vectors = reference_embeddings(root, manifest)["image_embeds"]
        real_kind, source = "flat", "reference image embeddings"
    size = size or len(real_vectors)
    # Default: what a deployment of this size should use. A flat scan of 100k x D floats costs ~4.5 ms and
    # ~50 MB resident at D=128 (4x at 512); IVF-PQ with exact re-ranking kept top-10 overlap 0.998 there.
    chosen_by = (
        "--index-kind"
        if kind
        else (
            f"auto: ivfpq from {AUTO_IVFPQ_FROM:,} images"
            if size >= AUTO_IVFPQ_FROM
            else "auto: the export's index kind"
        )
    )
    kind = kind or ("ivfpq" if size >= AUTO_IVFPQ_FROM else real_kind)
    vectors = (
        real_vectors[:size]
        if size <= len(real_vectors)
        else synthetic_gallery(size, real_vectors.shape[1], real=real_vectors)
    )
    n_real = min(size, len(real_vectors))
    paths = [f"real/{i}" for i in range(n_real)] + [f"synthetic/{i}" for i in range(n_real, size)]
    folder = work / "gallery_index"
    built = GalleryIndex.build(vectors, paths, kind)
    built.save(folder)
    files = sorted(folder.iterdir())
    info = {
        "gallery_size": size,
        "real": n_real,
        "synthetic": size - n_real,
        "real_source": source,
        "kind": kind,
        "kind_chosen_by": chosen_by,
        "synthetic_note": (
            "rows beyond the real gallery are synthetic unit vectors drawn around real "
            "embeddings: valid for latency and memory, not for recall"
        )
        if size > n_real
        else None,
        "index_bytes": {f.name: f.stat().st_size for f in files},
        "params": built.params,
    }
    return folder, info


def run_bench(root: Path, settings: Settings, work: Path, say) -> dict:
    started = time.time()
    manifest = read_manifest(root)
    gates = gate_status(root)
    queries = query_texts(manifest)
    inputs = sample_inputs(root, manifest, work, queries)
    threads = settings.threads[0]

    text, text_ranking = choose(root, manifest, "text", settings.artifact, gates, inputs, settings, work, say)
    image, image_ranking = choose(root, manifest, "image", None, gates, inputs, settings, work, say)
    encoders = []
    for artifact in (text, image):
        for t in settings.threads:
            say(f"timing {artifact['path']} with {t} thread(s)")
            r = time_encoder(root, artifact, inputs, t, work, settings.measure("full"))
            encoders.append(
                {
                    "artifact": artifact["path"],
                    "encoder": artifact["encoder"],
                    "threads": t,
                    "precision": artifact["precision"],
                    "runtime": artifact["runtime"],
                    "latency_ms": r["latency"],
                    "size_bytes": total_bytes(artifact),
                }
            )

    say(f"building a {settings.gallery_size or 'real'}-image gallery index")
    index_dir, gallery = bench_gallery(root, manifest, settings.gallery_size, settings.index_kind, work)
    queries_by_threads = {}
    for t in settings.threads:
        say(f"end-to-end queries in a fresh process, {t} thread(s)")
        queries_by_threads[t] = run_probe(
            PROBE,
            {
                "mode": "query",
                "dir": str(root),
                "artifact": text["path"],
                "runtime": text["runtime"],
                "index_dir": str(index_dir),
                "index_kind": gallery["kind"],
                "threads": t,
                "queries": queries,
                "k": 10,
                "measure": settings.measure("full"),
            },
            t,
            work,
        )
    query = queries_by_threads[threads]

    baseline = None
    if settings.baseline:
        say("PyTorch eager fp32 baseline in a fresh process")
        baseline = run_probe(
            BASELINE,
            {
                "dir": str(root),
                "threads": threads,
                "queries": queries,
                "k": 10,
                "gallery": str(index_dir / INDEX_EMBEDDINGS),
                "measure": settings.measure("full"),
            },
            threads,
            work,
        )

    say("peak GEMM rate and read bandwidth of this machine")
    gemm = run_probe(PROBE, {"mode": "gemm", "threads": threads}, threads, work)
    bandwidth = run_probe(PROBE, {"mode": "bandwidth", "threads": threads}, threads, work)
    fp32_text = next(
        a
        for a in manifest["artifacts"]
        if a["encoder"] == "text" and a["format"] == "onnx" and a["precision"] == "fp32" and not a.get("dynamic_length")
    )
    # A bidirectional text tower (short-query check failed) computes every position for every query.
    causal = manifest["text"].get("short_query", {}).get("exact", True)
    tokens = query["query_tokens_mean"] if causal else manifest["text"]["context_length"]
    flops = matmul_flops(root / fp32_text["path"], manifest["text"]["context_length"], tokens)
    text_p50 = next(
        e["latency_ms"]["p50"] for e in encoders if e["artifact"] == text["path"] and e["threads"] == threads
    )
    index_bytes = index_scan_bytes(gallery["kind"], gallery["gallery_size"], manifest["embed_dim"], gallery["params"])
    rooflines = {
        r["artifact"]: artifact_roofline(root, manifest, r, flops, tokens, gemm, bandwidth) for r in text_ranking
    }
    chosen = rooflines.get(text["path"]) or artifact_roofline(
        root, manifest, {"artifact": text["path"], "precision": text["precision"]}, flops, tokens, gemm, bandwidth
    )
    limit_ms = chosen["limit_ms"]
    query_limit = limit(
        chosen["matmul_flops"],
        chosen["peak_gops"],
        chosen["bytes_per_query"]["total"] + index_bytes,
        bandwidth["peak_read_gbs"],
    )

    sweep = None
    if settings.sweep_sizes:
        say("index latency vs gallery size")
        reference = np.load(root / manifest["evaluation"]["reference"])
        np.save(work / "sweep_real.npy", reference["image_embeds"])
        np.save(work / "sweep_queries.npy", reference["text_embeds"][:64])
        sweep = run_probe(
            PROBE,
            {
                "mode": "index-sweep",
                "sizes": list(settings.sweep_sizes),
                "kinds": list(settings.sweep_kinds),
                "real": str(work / "sweep_real.npy"),
                "queries": str(work / "sweep_queries.npy"),
                "threads": threads,
                "measure": settings.measure("selection"),
            },
            threads,
            work,
            timeout=1800,
        )

    p50 = query["latency"]["p50"]
    device = device_profile_checks(manifest, settings.budget_ms, settings.budget_mb)
    passed = (
        p50 <= settings.budget_ms and query["peak_rss_mb"] <= settings.budget_mb and all(d["passed"] for d in device)
    )
    report = {
        "student": manifest["student"]["id"],
        "random_init": manifest["student"].get("random_init", False),
        "threads": threads,
        "gallery_size": gallery["gallery_size"],
        "gallery": gallery,
        "query_latency_ms": {
            k: query["latency"][k] for k in ("p50", "p90", "p99", "mean", "repeats", "halves_median_drift")
        },
        "query_latency_samples_ms": query["latency"]["samples_ms"],
        "query_stages_p50_ms": query["stages_p50_ms"],
        "query_tokens_mean": query["query_tokens_mean"],
        "peak_rss_mb": round(query["peak_rss_mb"], 1),
        "memory_breakdown_mb": memory_breakdown(query["memory"]),
        "query_process_imports_torch": bool(query["torch_imported"]),
        "by_threads": {
            str(t): {
                "query_latency_ms": {k: r["latency"][k] for k in ("p50", "p90", "p99")},
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
            }
            for t, r in queries_by_threads.items()
        },
        "artifacts": {
            "text": {
                "path": text["path"],
                "precision": text["precision"],
                "runtime": text["runtime"],
                "size_bytes": total_bytes(text),
                "gate_passed": verdict(text, gates)[0],
                "chosen_by": "--artifact"
                if settings.artifact
                else "fastest that passed the fidelity gate"
                + (f" on {' / '.join(settings.runtimes)} (what the app build runs)" if settings.runtimes else ""),
            },
            "image": {
                "path": image["path"],
                "precision": image["precision"],
                "runtime": image["runtime"],
                "size_bytes": total_bytes(image),
                "gate_passed": verdict(image, gates)[0],
            },
            "text_ranking": text_ranking,
            "image_ranking": image_ranking,
        },
        "encoders": encoders,
        "baseline": (
            {
                "name": baseline["name"],
                "description": baseline["description"],
                "query_latency_ms": {k: baseline["latency"][k] for k in ("p50", "p90", "p99", "repeats")},
                "query_latency_samples_ms": baseline["latency"]["samples_ms"],
                "peak_rss_mb": round(baseline["peak_rss_mb"], 1),
                "torch": baseline["torch_version"],
            }
            if baseline
            else None
        ),
        "speedup_vs_baseline": round(baseline["latency"]["p50"] / p50, 2) if baseline else None,
        "physical_limit": {
            "text_encoder_matmul_flops_at_query_tokens": flops["at_tokens"],
            "text_encoder_matmul_flops_full_context": flops["full"],
            "query_tokens_mean": flops["tokens"],
            "peak_gemm_gflops": gemm["peak_gflops"],
            "peak_int8_gops": gemm["peak_int8_gops"],
            "read_bandwidth_gbs": bandwidth["peak_read_gbs"],
            "gemm": gemm,
            "bandwidth": bandwidth,
            "model": "max(matmul FLOPs / GEMM peak of the precision, bytes read per query / read "
            "bandwidth); bytes = weights once + gathered table rows (+ index scan for the query)",
            "text_encoder": chosen,
            # Same 6-decimal rounding as the query limit, so query_limit_ms >= text_encoder_limit_ms holds as written.
            "text_encoder_limit_ms": limit_ms,
            "text_encoder_efficiency": round(limit_ms / text_p50, 4),
            "per_artifact": rooflines,
            "index_scan_bytes": index_bytes,
            "query": query_limit,
            "query_limit_ms": query_limit["limit_ms"],
            "query_efficiency": round(query_limit["limit_ms"] / p50, 4),
        },
        "index_sweep": sweep,
        "budget": {
            "memory_mb": settings.budget_mb,
            "latency_ms": settings.budget_ms,
            "passed": passed,
            "latency_passed": p50 <= settings.budget_ms,
            "memory_passed": query["peak_rss_mb"] <= settings.budget_mb,
            "device_profiles": device,
        },
        "tools": tool_versions("onnxruntime", "ai-edge-litert", "faiss-cpu", "numpy", "torch", "open_clip_torch"),
        "seconds": round(time.time() - started, 1),
    }
    write_text_atomic(root / BENCH_REPORT, bench_json(report, root), root=root)
    manifest["deployment"] = {
        "text_encoder": text["path"],
        "image_encoder": image["path"],
        "chosen_by": f"mcad-export bench ({report['artifacts']['text']['chosen_by']})",
    }
    write_text_atomic(root / MANIFEST, dump_manifest(manifest), root=root)
    return report


def artifact_roofline(
    root: Path, manifest: dict, ranked: dict, flops: dict, tokens: float, gemm: dict, bandwidth: dict
) -> dict:
    """The floor of one text artifact at the query's tokens, and its measured efficiency against it."""
    artifact = next(a for a in manifest["artifacts"] if a["path"] == ranked["artifact"])
    from ..quantize.onnx_recipes import INTEGER_PRECISIONS

    integer = artifact["precision"] in INTEGER_PRECISIONS
    peak = gemm["peak_int8_gops"] if integer else gemm["peak_gflops"]
    # A fixed-length encoder computes every position of its input whatever the query's length: its floor is the
    # work at full context; only the one-query (dynamic-length) encoders can do the query's tokens alone.
    at = tokens if artifact.get("dynamic_length") else flops["context_length"]
    work = flops["at_tokens"] if artifact.get("dynamic_length") else flops["full"]
    # ONNX graphs say which initializers are lookup tables; a TFLite file is counted whole (an upper bound: its
    # token table is read only at the query's rows).
    bytes_read = (
        weight_bytes_per_query(root / artifact["path"], at)
        if artifact["format"] == "onnx"
        else {"weights": total_bytes(artifact), "table_rows": 0, "total": total_bytes(artifact), "whole_file": True}
    )
    out = {
        "artifact": artifact["path"],
        "precision": artifact["precision"],
        "tokens": at,
        "matmul_flops": work,
        "peak_gops": peak,
        "peak_kind": "int8" if integer else "fp32",
        "bytes_per_query": bytes_read,
        **limit(work, peak, bytes_read["total"], bandwidth["peak_read_gbs"]),
    }
    if ranked.get("p50_ms"):
        out.update(
            measured_p50_ms=ranked["p50_ms"],
            efficiency=round(out["limit_ms"] / ranked["p50_ms"], 4),
            times_limit=round(ranked["p50_ms"] / out["limit_ms"], 2),
        )
    return out


def memory_breakdown(stages: dict) -> dict:
    """Resident memory added by each step of the query process (MB, from VmRSS), then the peak."""
    order = ["interpreter", "runtime_libraries", "tokenizer", "model", "index", "queries"]
    out, previous = {}, 0.0
    for name in order:
        rss = stages[name]["VmRSS"]
        out[name] = round(rss - previous, 1)
        previous = rss
    out["peak_vmhwm"] = round(stages["queries"]["VmHWM"], 1)
    return out
