"""The profiling report: self-contained HTML that a real browser renders with its plots and verdict."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from mcad_export.contract import BENCH_REPORT, REPORT_HTML, REPORT_JSON, REPORT_MD

VERDICT_PASS, VERDICT_MISS = (0x1A, 0x7F, 0x37), (0xCF, 0x22, 0x2E)
PLOT_BLUE, PLOT_ORANGE = (0x1F, 0x6F, 0xEB), (0xE3, 0x62, 0x09)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("headless Chromium is required for the report test; scripts/test.sh installs Debian's chromium")
    return path


def headless(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=3000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def pixels_near(image: np.ndarray, rgb, tol: int = 6) -> int:
    return int((np.abs(image.astype(int) - np.array(rgb)).max(axis=2) <= tol).sum())


def test_report_is_self_contained_and_matches_bench(embedded_run):
    out, proc = embedded_run
    bench = json.loads((out / BENCH_REPORT).read_text())
    page = (out / REPORT_HTML).read_text()
    # Opens offline: nothing is fetched (the SVG namespace is an identifier, not a request).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert not re.search(r"@import|url\(", page)
    for plot in ("query-latency", "baseline-latency", "latency-vs-gallery", "memory-breakdown"):
        assert f'data-plot="{plot}"' in page
    data = json.loads((out / REPORT_JSON).read_text())
    assert data["verdict"]["passed"] == bench["budget"]["passed"]
    assert f"{bench['query_latency_ms']['p50']:.2f} ms" in data["verdict"]["summary"]
    markdown = (out / REPORT_MD).read_text()
    assert f"| this toolkit | {bench['query_latency_ms']['p50']:.3f} |" in markdown
    assert f"{bench['speedup_vs_baseline']:.1f}x" in markdown
    assert "report.html" in proc.stdout


def test_report_renders_in_headless_chromium(embedded_run, tmp_path):
    out, _ = embedded_run
    bench = json.loads((out / BENCH_REPORT).read_text())
    url = (out / REPORT_HTML).resolve().as_uri()
    dom = headless(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r'<body data-plots="(\d+)" data-plots-rendered="(\d+)"', dom.stdout)
    assert body, "the page's script did not run: " + dom.stdout[:500]
    plots, rendered = map(int, body.groups())
    assert plots >= 4 and rendered == plots
    # Retrieval as a user sees it: 4 held-out captions, top-5 thumbnails (data: URIs) from fp32 and the deployed
    # encoder, the true image marked; the thumbnails decode in the browser (naturalWidth is set on load).
    table = re.search(r'<table class="hits" data-retrieval="(\d+)">(.*?)</table>', dom.stdout, re.S)
    assert table and int(table.group(1)) == 4
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"[^>]*>', table.group(2))
    assert len(images) == 4 * 2 * 5 and sum("data-true" in i for i in images) >= 4
    # The run rejects the static INT8 TFLite image encoder: one more table shows what it would have done.
    damage = re.search(r'<table class="hits damage" data-retrieval="1">(.*?)</table>', dom.stdout, re.S)
    assert damage and "rejected by quantize: tflite/image_encoder.w8a8.tflite" in damage.group(1)
    decoded = re.search(r'data-thumbs-decoded="(\d+)"', dom.stdout)
    assert decoded and int(decoded.group(1)) == len(images) + 10
    verdict = re.search(r'<div id="verdict" class="(pass|miss)">([^<]+)', dom.stdout)
    assert verdict and verdict.group(1) == ("pass" if bench["budget"]["passed"] else "miss")
    assert verdict.group(2).startswith("PASS" if bench["budget"]["passed"] else "MISS")

    shot = tmp_path / "report.png"
    run = headless(tmp_path, f"--screenshot={shot}", "--window-size=1100,4200", url)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (4200, 1100)
    # The verdict banner is painted at the top in its colour, the plots' series colours appear below it.
    banner = VERDICT_PASS if bench["budget"]["passed"] else VERDICT_MISS
    assert pixels_near(image[:250], banner) > 20_000
    assert pixels_near(image[250:], PLOT_BLUE) > 3_000
    assert pixels_near(image[250:], PLOT_ORANGE) > 300
    assert len(np.unique(image.reshape(-1, 3)[::97], axis=0)) > 50  # not a blank or single-colour page


def test_latency_histogram_keeps_its_axis_on_the_data():
    """An 8 ms budget over ~1 ms queries must not squeeze every sample into a bin or two."""
    from mcad_export.report import svg

    rng = np.random.default_rng(0)
    fast = list(0.9 + 0.05 * rng.standard_normal(500))
    page = svg.histogram("h", "t", {"q": fast}, "ms", marker=("budget 8 ms", 8.0))
    assert page.count("<rect") > 20 and "off scale" in page and "stroke-dasharray" not in page
    slow = list(6.0 + 0.5 * rng.standard_normal(500))
    page = svg.histogram("h", "t", {"q": slow}, "ms", marker=("budget 8 ms", 8.0))
    assert "off scale" not in page and "stroke-dasharray" in page  # the budget line is drawn on the axis


def test_a_variant_that_failed_the_gate_shows_its_damage(scratch_export):
    from mcad_export.report import write_report

    fidelity = scratch_export / "reports" / "fidelity.json"
    records = json.loads(fidelity.read_text())
    failed = next(r for r in records if r["artifact"] == "text_encoder.w8.onnx")
    failed.update(passed=False, misses=["marked failed by the test"])
    fidelity.write_text(json.dumps(records))
    write_report(scratch_export)
    data = json.loads((scratch_export / REPORT_JSON).read_text())
    rows, damage = data["retrieval"]["rows"], data["retrieval"]["damage"]
    assert len(rows) == 4 and "failed the gate: text_encoder.w8.onnx" in damage["found"]
    assert all(len(top) == 5 for row in [*rows, damage] for top in row["found"].values())
    shown = {str(i) for row in [*rows, damage] for top in row["found"].values() for i in top}
    assert set(data["retrieval"]["thumbnails"]) >= shown
