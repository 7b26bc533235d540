"""Gallery index, the torch-free query path, `bench` numbers and the budget verdict."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mcad_export.contract import BENCH_REPORT, FIDELITY_REPORT, INDEX_DIR, MANIFEST
from mcad_export.data.scenes import caption_at
from mcad_export.runtime.index import GalleryIndex, synthetic_gallery

from .conftest import run_cli


def test_index_kinds_find_what_exact_search_finds(tmp_path):
    rng = np.random.default_rng(1)
    real = rng.standard_normal((500, 64)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    gallery = synthetic_gallery(5000, 64, real=real)
    assert np.allclose(np.linalg.norm(gallery, axis=1), 1, atol=1e-5) and np.array_equal(gallery[:500], real)
    queries = gallery[rng.integers(0, 5000, 100)] + 0.05 * rng.standard_normal((100, 64)).astype(np.float32)
    paths = [f"img/{i}.png" for i in range(5000)]
    exact_scores = queries @ gallery.T
    exact = np.argsort(-exact_scores, axis=1)[:, :10]
    for kind, min_overlap in (("flat", 1.0), ("sq8", 0.99), ("ivfpq", 0.9)):
        built = GalleryIndex.build(gallery, paths, kind)
        built.save(tmp_path / kind)
        loaded = GalleryIndex.load(tmp_path / kind)
        scores, ids = loaded.search(queries, 10)
        assert np.array_equal(ids, built.search(queries, 10)[1]), kind
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert overlap >= min_overlap, (kind, overlap)
        # Scores of every kind are exact inner products (re-ranked from the float rows).
        np.testing.assert_allclose(scores, np.take_along_axis(exact_scores, ids, 1), rtol=1e-5, atol=1e-5)
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        assert loaded.path_of(int(ids[0, 0])) == paths[ids[0, 0]]
    assert GalleryIndex.load(tmp_path / "flat").embeddings.__class__ is np.memmap


def test_search_cli_finds_the_captioned_image(embedded_run):
    out, _ = embedded_run
    reference = np.load(out / "reference" / "eval_embeddings.npz")
    # A held-out caption whose fp32 top-1 is its own image (the student's R@1 is 0.44, not 1).
    top1 = np.argmax(reference["text_embeds"] @ reference["image_embeds"].T, axis=1)
    i = int(np.flatnonzero(top1 == np.arange(len(top1)))[0])
    proc = run_cli("search", out, caption_at("heldout", i), "-k", 3)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "heldout_" in line]
    assert len(rows) == 3 and f"heldout_{i:05d}.png" in rows[0], proc.stdout


def test_query_path_recall_and_no_torch(embedded_run):
    """The deployed query path in a torch-free process reproduces the gate's t2i recall."""
    out, _ = embedded_run
    fidelity = {r["artifact"]: r for r in json.loads((out / FIDELITY_REPORT).read_text())}
    deployed = json.loads((out / MANIFEST).read_text())["deployment"]["text_encoder"]
    code = (
        "import sys, json; from mcad_export.runtime.search import TextSearch; "
        "from mcad_export.data.scenes import caption_at; "
        f"s = TextSearch({str(out)!r}); "
        "hits = [s.search(caption_at('heldout', i), 10) for i in range(1000)]; "
        "r1 = sum(h[0].path.endswith(f'heldout_{i:05d}.png') for i, h in enumerate(hits)) / 1000; "
        "r10 = sum(any(x.path.endswith(f'heldout_{i:05d}.png') for x in h) for i, h in enumerate(hits)) / 1000; "
        "print(json.dumps({'r1': r1, 'r10': r10, 'artifact': s.artifact['path'], "
        "'heavy': [m for m in ('torch', 'open_clip', 'onnx') if m in sys.modules]}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["artifact"] == deployed
    # The index holds ONNX image embeddings of the PNG files, the gate used PyTorch ones: near-ties may flip.
    assert result["r1"] == pytest.approx(fidelity[deployed]["recall_at_1"], abs=0.003)
    assert result["r10"] == pytest.approx(fidelity[deployed]["recall_at_10"], abs=0.003)


def test_index_skips_unreadable_files_and_keeps_the_old_index_on_failure(scratch_export, tmp_path):
    images = tmp_path / "photos"
    (images / "nested").mkdir(parents=True)
    for i in range(4):
        shutil.copy(scratch_export / "gallery" / f"heldout_{i:05d}.png", images / f"{i}.png")
    shutil.copy(scratch_export / "gallery" / "heldout_00004.png", images / "nested" / "4.PNG")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "text.png").write_text("hello")
    (images / "notes.txt").write_text("ignored: not an image suffix")
    proc = run_cli("index", scratch_export, "--images", images, "--kind", "sq8")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((scratch_export / INDEX_DIR / "index.json").read_text())
    assert (meta["count"], meta["scanned"], meta["skipped"], meta["kind"]) == (5, 7, 2, "sq8")
    assert "2 unreadable file(s) skipped" in proc.stdout
    assert sorted(meta["skipped_files"][i]["path"].rsplit("/", 1)[1] for i in range(2)) == ["broken.jpg", "text.png"]
    before = (scratch_export / INDEX_DIR / "embeddings.f32.npy").read_bytes()
    bad = tmp_path / "only-broken"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    proc = run_cli("index", scratch_export, "--images", bad)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "could be read" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (scratch_export / INDEX_DIR / "embeddings.f32.npy").read_bytes() == before
    assert not [p for p in scratch_export.iterdir() if ".partial-" in p.name]


def test_bench_json_holds_consistent_measured_numbers(embedded_run):
    out, proc = embedded_run
    bench = json.loads((out / BENCH_REPORT).read_text())
    lat = bench["query_latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["repeats"] >= 30
    assert bench["threads"] == 1 and bench["gallery_size"] == 100_000
    assert bench["gallery"]["real"] == 1000 and bench["gallery"]["synthetic"] == 99_000
    assert bench["query_process_imports_torch"] is False
    # Peak RSS is read from the kernel; the breakdown's parts add up to the resident set before the peak.
    breakdown = bench["memory_breakdown_mb"]
    parts = sum(v for k, v in breakdown.items() if k != "peak_vmhwm")
    assert 30 < bench["peak_rss_mb"] < 2000 and parts <= bench["peak_rss_mb"] + 1
    assert breakdown["index"] > 0 and breakdown["runtime_libraries"] > 0
    baseline = bench["baseline"]
    assert baseline["name"] == "pytorch-eager-fp32" and baseline["query_latency_ms"]["p50"] > 0
    assert bench["speedup_vs_baseline"] == pytest.approx(baseline["query_latency_ms"]["p50"] / lat["p50"], rel=0.01)
    budget = bench["budget"]
    assert (budget["memory_mb"], budget["latency_ms"]) == (100.0, 8.0)
    assert budget["passed"] == (lat["p50"] <= 8.0 and bench["peak_rss_mb"] <= 100.0)
    # The chosen text encoder is the fastest of the ranking that passed the gate (deployable.py).
    ranking = bench["artifacts"]["text_ranking"]
    eligible = [r for r in ranking if r["gate_passed"] is True]
    assert eligible and bench["artifacts"]["text"]["gate_passed"] is True
    assert bench["artifacts"]["text"]["path"] == min(eligible, key=lambda r: r["p50_ms"])["artifact"]
    assert len(ranking) == len(
        [a for a in json.loads((out / MANIFEST).read_text())["artifacts"] if a["encoder"] == "text"]
    )
    # Matmul FLOPs of the embedded text transformer (width 96, 4 layers, MLP 4x, 128-d projection) at T tokens.
    limit = bench["physical_limit"]
    t, w = limit["query_tokens_mean"], 96
    expected = 4 * (24 * w * w * t + 4 * t * t * w) + 2 * w * 128
    assert limit["text_encoder_matmul_flops_at_query_tokens"] == pytest.approx(expected, rel=1e-6)
    assert 20 < limit["peak_gemm_gflops"] < 5000 and 1 < limit["read_bandwidth_gbs"] < 1000
    # The roofline: max(compute at the precision's measured peak, bytes read per query / measured bandwidth).
    text = limit["text_encoder"]
    peak = limit["peak_int8_gops"] if text["peak_kind"] == "int8" else limit["peak_gemm_gflops"]
    assert text["compute_ms"] == pytest.approx(expected / peak / 1e6, rel=1e-3)
    assert text["memory_ms"] == pytest.approx(
        text["bytes_per_query"]["total"] / limit["read_bandwidth_gbs"] / 1e6, rel=1e-3
    )
    assert limit["text_encoder_limit_ms"] == pytest.approx(max(text["compute_ms"], text["memory_ms"]), abs=1e-4)
    assert limit["query_limit_ms"] >= limit["text_encoder_limit_ms"] and limit["index_scan_bytes"] > 0
    assert set(limit["per_artifact"]) <= {r["artifact"] for r in ranking}
    # A fixed-length encoder computes all 77 positions whatever the query: its floor is the full-context work.
    full = limit["per_artifact"]["text_encoder.onnx"]
    assert full["tokens"] == 77 and full["matmul_flops"] == limit["text_encoder_matmul_flops_full_context"]
    assert full["compute_ms"] == pytest.approx(full["matmul_flops"] / limit["peak_gemm_gflops"] / 1e6, rel=1e-3)
    sizes = {(r["gallery_size"], r["kind"]) for r in bench["index_sweep"]["rows"]}
    assert {(1000, "flat"), (100_000, "sq8"), (100_000, "ivfpq")} <= sizes
    assert all(r["top10_overlap_vs_flat"] >= 0.8 for r in bench["index_sweep"]["rows"])
    assert "budget 100 MB / 8 ms" in proc.stdout and "faster" in proc.stdout


def test_enforce_budget_fails_with_the_numbers(scratch_export):
    proc = run_cli(
        "bench",
        scratch_export,
        "--quick",
        "--no-baseline",
        "--sweep-sizes",
        "0",
        "--gallery-size",
        "0",
        "--budget-ms",
        "0.001",
        "--enforce-budget",
    )
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.startswith("error: budget missed: p50") and len(proc.stderr.strip().splitlines()) == 1
    bench = json.loads((scratch_export / BENCH_REPORT).read_text())
    assert bench["budget"]["passed"] is False and bench["budget"]["latency_ms"] == 0.001
    assert bench["gallery_size"] == 1000 and bench["baseline"] is None and bench["index_sweep"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "{dir}", "x"], "no gallery index"),
        (["index", "{dir}", "--images", "{dir}/nope"], "is not a folder"),
        (["bench", "{dir}", "--artifact", "text_encoder.w4.onnx"], "no text-encoder artifact"),
        (["report", "{dir}"], "no reports/bench.json"),
    ],
)
def test_bad_runtime_inputs_get_one_line(scratch_export, args, message):
    shutil.rmtree(scratch_export / INDEX_DIR)
    (scratch_export / BENCH_REPORT).unlink()
    proc = run_cli(*[a.format(dir=scratch_export) for a in args])
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
