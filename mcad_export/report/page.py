"""report.html: one self-contained page (inline CSS and SVG; the only script counts rendered plots)."""

from __future__ import annotations

import html

from . import svg
from .markdown import LANGUAGE_HEADER, apk_lines, flips, language_rows

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei","WenQuanYi Zen Hei",sans-serif;margin:24px auto;max-width:1000px;color:#1f2328;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
#verdict{padding:14px 18px;border-radius:6px;font-size:18px;font-weight:600;color:#fff}
#verdict.pass{background:#1a7f37}#verdict.miss{background:#cf222e}#verdict small{display:block;font-weight:400;font-size:13px}
.note{color:#57606a;font-size:13px}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
svg.plot{display:block;margin:8px 0;background:#fff;border:1px solid #eaeef2}
.hits img{width:48px;height:48px;margin:1px;border:3px solid transparent;image-rendering:pixelated}
.hits img.true{border-color:#1a7f37}.hits td{text-align:left;vertical-align:middle}.hits td+td{white-space:nowrap}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var plots = Array.prototype.slice.call(document.querySelectorAll('svg.plot'));
  var drawn = plots.filter(function (p) {
    var r = p.getBoundingClientRect();
    return r.width > 100 && r.height > 100 && p.querySelectorAll('rect,polyline,circle').length > 3;
  });
  document.body.setAttribute('data-plots', plots.length);
  document.body.setAttribute('data-plots-rendered', drawn.length);
  var thumbs = Array.prototype.slice.call(document.querySelectorAll('table.hits img'));
  document.body.setAttribute('data-thumbs-decoded', thumbs.filter(function (i) { return i.naturalWidth > 0; }).length);
});
"""


def _e(x) -> str:
    return html.escape(str(x))


def _hits_table(r: dict, rows: list[dict]) -> str:
    names = list(rows[0]["found"])
    head = "".join(f"<th>{_e(n)}</th>" for n in ["caption", *names])
    body = []
    for row in rows:
        cells = [f"<td>{_e(row['caption'])}</td>"]
        for name in names:
            imgs = "".join(
                f'<img src="{r["thumbnails"][str(i)]}" alt="row {i}" title="row {i}" data-row="{i}"'
                + (' class="true" data-true="1"' if i == row["true"] else "")
                + ">"
                for i in row["found"][name]
            )
            cells.append(f"<td>{imgs}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="hits" data-retrieval="{len(rows)}"><tr>{head}</tr>{"".join(body)}</table>'


def _retrieval(r: dict) -> str:
    """Top-5 thumbnails per caption and encoder, the true image outlined (the section a person looks at first)."""
    out = (
        "<h2>Retrieval, as a user sees it</h2>"
        f'<p class="note">Top-5 of {r["gallery"]:,} held-out images for a few held-out captions, best first; the '
        "true image is outlined in green. Each text encoder ranks the PyTorch fp32 image embeddings, as the gate "
        "does.</p>" + _hits_table(r, r["rows"])
    )
    if r.get("damage"):
        out += (
            '<p class="note">What a variant the gate turned away would have done to the first search:</p>'
            + _hits_table(r, [r["damage"]]).replace('class="hits"', 'class="hits damage"', 1)
        )
    return out


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _mark(ok) -> str:
    return '<span class="ok">pass</span>' if ok else ('<span class="bad">miss</span>' if ok is False else "-")


def _word(ok) -> str:
    return {True: "pass", False: "MISS", None: "not run"}[ok]


def render_html(data: dict) -> str:
    b, v = data["bench"], data["verdict"]
    lat, base = b["query_latency_ms"], b.get("baseline")
    parts = [f"<h1>mcad-export profiling report: {_e(data['student']['id'])}</h1>"]
    if b.get("random_init"):
        parts.append(
            '<p class="note">Random-init student: sizes and latencies are real, accuracy numbers are meaningless.</p>'
        )
    parts.append(
        f'<div id="verdict" class="{"pass" if v["passed"] else "miss"}">{_e(v["summary"])}'
        f"<small>latency {_word(b['budget']['latency_passed'])} · memory {_word(b['budget']['memory_passed'])}"
        f" · text encoder {_e(b['artifacts']['text']['path'])} (fidelity gate "
        f"{_word(b['artifacts']['text']['gate_passed'])})"
        + (f" · {b['speedup_vs_baseline']:.1f}x faster than {_e(base['name'])}" if base else "")
        + "</small></div>"
    )
    if data.get("retrieval"):
        parts.append(_retrieval(data["retrieval"]))

    parts.append("<h2>Search latency (tokenize + text encoder + top-10)</h2>")
    rows = [
        [
            "this toolkit",
            f"{lat['p50']:.3f}",
            f"{lat['p90']:.3f}",
            f"{lat['p99']:.3f}",
            lat["repeats"],
            f"{b['peak_rss_mb']:.1f}",
        ]
    ]
    if base:
        bl = base["query_latency_ms"]
        rows.append(
            [
                _e(base["name"]),
                f"{bl['p50']:.3f}",
                f"{bl['p90']:.3f}",
                f"{bl['p99']:.3f}",
                bl["repeats"],
                f"{base['peak_rss_mb']:.1f}",
            ]
        )
    parts.append(_table(["query path", "p50 ms", "p90 ms", "p99 ms", "samples", "peak RSS MB"], rows))
    stages = b["query_stages_p50_ms"]
    parts.append(
        f'<p class="note">p50 by stage: tokenize {stages["tokenize_ms"]:.3f} ms, text encoder '
        f"{stages['encode_ms']:.3f} ms, top-10 search {stages['search_ms']:.3f} ms; "
        f"{b['query_tokens_mean']:.1f} tokens per query on average.</p>"
    )
    parts.append(
        svg.histogram(
            "query-latency",
            "Query latency distribution (this toolkit)",
            {"query latency": b["query_latency_samples_ms"]},
            "milliseconds",
            marker=(f"budget {b['budget']['latency_ms']:g} ms", b["budget"]["latency_ms"]),
        )
    )
    if base:
        parts.append(
            svg.histogram(
                "baseline-latency",
                f"Query latency distribution ({base['name']})",
                {base["name"]: base["query_latency_samples_ms"]},
                "milliseconds",
            )
        )
        parts.append(
            f'<p class="note">Baseline: {_e(base["description"])}, torch {_e(base["torch"])}, same gallery, '
            f"same queries, same thread count, its own process.</p>"
        )

    parts.append("<h2>Encoders (batch 1)</h2>")
    parts.append(
        _table(
            ["artifact", "threads", "p50 ms", "p90 ms", "p99 ms", "size MB"],
            [
                [
                    _e(e["artifact"]),
                    e["threads"],
                    f"{e['latency_ms']['p50']:.3f}",
                    f"{e['latency_ms']['p90']:.3f}",
                    f"{e['latency_ms']['p99']:.3f}",
                    f"{e['size_bytes'] / 1e6:.2f}",
                ]
                for e in b["encoders"]
            ],
        )
    )
    parts.append(
        _table(
            ["text-encoder candidate", "precision", "runtime", "p50 ms (ranking)", "gate", "size MB"],
            [
                [
                    _e(r["artifact"]),
                    r["precision"],
                    r["runtime"],
                    f"{r['p50_ms']:.3f}",
                    _mark(r["gate_passed"]),
                    f"{r['size_bytes'] / 1e6:.2f}",
                ]
                for r in b["artifacts"]["text_ranking"]
            ],
        )
    )

    if b.get("index_sweep"):
        rows = b["index_sweep"]["rows"]
        series: dict[str, list] = {}
        for r in rows:
            series.setdefault(r["kind"], []).append((r["gallery_size"], r["search_latency_ms"]["p50"]))
        parts.append("<h2>Top-10 search latency vs gallery size</h2>")
        parts.append(
            svg.line_chart(
                "latency-vs-gallery", "Index search p50 (ms) vs gallery size", series, "gallery size (images)", "p50 ms"
            )
        )
        parts.append(
            _table(
                ["gallery", "index", "p50 ms", "p99 ms", "scanned MB", "top-10 overlap vs exact", "build s"],
                [
                    [
                        f"{r['gallery_size']:,}",
                        r["kind"],
                        f"{r['search_latency_ms']['p50']:.3f}",
                        f"{r['search_latency_ms']['p99']:.3f}",
                        f"{r['scan_bytes'] / 1e6:.1f}",
                        "-" if r["top10_overlap_vs_flat"] is None else f"{r['top10_overlap_vs_flat']:.3f}",
                        f"{r['build_s']:.2f}",
                    ]
                    for r in rows
                ],
            )
        )
        parts.append(
            '<p class="note">Galleries beyond the real embeddings are synthetic (unit vectors drawn around '
            "real ones): valid for latency, not for recall.</p>"
        )

    mem = dict(b["memory_breakdown_mb"])
    peak = mem.pop("peak_vmhwm")
    parts.append("<h2>Memory of the query process</h2>")
    parts.append(
        svg.stacked_bar(
            "memory-breakdown", "Resident memory by component (MB)", mem, "MB", budget=b["budget"]["memory_mb"]
        )
    )
    parts.append(
        f'<p class="note">Peak resident set (VmHWM, read from the kernel) {peak:.1f} MB; components are '
        f"VmRSS growth after each loading step of a fresh process that runs only the query path "
        f"(torch imported: {b['query_process_imports_torch']}). Gallery: {b['gallery']['gallery_size']:,} "
        f"images, {b['gallery']['kind']} index, {b['gallery']['synthetic']:,} synthetic; index files "
        f"{sum(b['gallery']['index_bytes'].values()) / 1e6:.1f} MB, text encoder "
        f"{b['artifacts']['text']['size_bytes'] / 1e6:.2f} MB.</p>"
    )

    lim = b["physical_limit"]
    parts.append("<h2>Physical limit</h2>")
    parts.append(
        _table(
            ["quantity", "value"],
            [
                [
                    "text-encoder matmul GFLOP at the query's tokens",
                    f"{lim['text_encoder_matmul_flops_at_query_tokens'] / 1e9:.4f}",
                ],
                ["… at the full context", f"{lim['text_encoder_matmul_flops_full_context'] / 1e9:.4f}"],
                ["peak GEMM GFLOP/s (measured, this thread count)", f"{lim['peak_gemm_gflops']:.1f}"],
                ["peak int8 GOP/s (measured, MatMulInteger)", f"{lim['peak_int8_gops']:.1f}"],
                ["read bandwidth GB/s (measured)", f"{lim['read_bandwidth_gbs']:.1f}"],
                ["text encoder: MB read per query", f"{lim['text_encoder']['bytes_per_query']['total'] / 1e6:.2f}"],
                [
                    "text encoder: lookup tables MB (resident per query)",
                    f"{lim['text_encoder']['bytes_per_query'].get('tables', 0) / 1e6:.2f} "
                    f"({lim['text_encoder']['bytes_per_query']['table_rows'] / 1e6:.3f})",
                ],
                [
                    "text encoder: compute / memory floor ms",
                    f"{lim['text_encoder']['compute_ms']:.4f} / {lim['text_encoder']['memory_ms']:.4f}",
                ],
                ["limit ms (the larger)", f"{lim['text_encoder_limit_ms']:.4f} ({lim['text_encoder']['bound']}-bound)"],
                ["text-encoder efficiency (limit / p50)", f"{lim['text_encoder_efficiency']:.1%}"],
                ["query limit ms (with the index scan)", f"{lim['query_limit_ms']:.4f}"],
                ["query efficiency (limit / query p50)", f"{lim['query_efficiency']:.1%}"],
            ],
        )
    )
    if lim.get("per_artifact"):
        parts.append(
            _table(
                ["text encoder", "precision", "MB read", "compute ms", "memory ms", "limit ms", "p50 ms", "x limit"],
                [
                    [
                        _e(r["artifact"]),
                        r["precision"],
                        f"{r['bytes_per_query']['total'] / 1e6:.2f}"
                        + (" (whole file)" if r["bytes_per_query"].get("whole_file") else ""),
                        f"{r['compute_ms']:.3f}",
                        f"{r['memory_ms']:.3f}",
                        f"{r['limit_ms']:.3f}",
                        f"{r.get('measured_p50_ms', float('nan')):.3f}",
                        f"{r.get('times_limit', float('nan')):.2f}",
                    ]
                    for r in lim["per_artifact"].values()
                ],
            )
        )

    parts.append("<h2>Fidelity gate (vs PyTorch fp32, held-out set)</h2>")
    if not data["recall_meaningful"]:
        parts.append(
            '<p class="note">Recall is not meaningful for this student (random init or unknown domain); cosine is.</p>'
        )
    if data.get("gate_sensitivity"):
        parts.append(f'<p class="note">{_e(data["gate_sensitivity"])}</p>')
    parts.append(
        _table(
            [
                "artifact",
                "cos mean",
                "cos min",
                "t2i R@1",
                "fp32 R@1",
                "R@1 lost / gained",
                "R@10",
                "top-10 overlap",
                "gate",
            ],
            [
                [
                    _e(r["artifact"]),
                    *(f"{r[k]:.4f}" for k in ("cosine_mean", "cosine_min")),
                    *(f"{r[k]:.3f}" for k in ("recall_at_1", "recall_at_1_fp32")),
                    _e(flips(r)),
                    *(f"{r[k]:.3f}" for k in ("recall_at_10", "top10_overlap")),
                    _mark(r["passed"]),
                ]
                for r in data["fidelity"]
                if r.get("passed") is not None
            ],
        )
        if data["fidelity"]
        else '<p class="note">No fidelity.json: run `mcad-export verify`.</p>'
    )
    if language_rows(data["fidelity"] or []):
        parts.append("<h3>Per caption language</h3>")
        parts.append(_table(LANGUAGE_HEADER, [[_e(c) for c in row] for row in language_rows(data["fidelity"])]))

    if data.get("device_bench"):
        d = data["device_bench"]
        lat = d["record"]["latency_ms"]
        parts.append("<h2>On the device (the app's benchmark mode)</h2>")
        parts.append(f'<p class="note">{_e(d["verdict"]["summary"])}</p>')
        parts.append(
            _table(
                ["stage", "p50 ms", "p90 ms", "p99 ms"],
                [
                    [s, *(f"{lat[s][p]:.3f}" for p in ("p50", "p90", "p99"))]
                    for s in ("tokenize", "encode", "search", "total")
                ],
            )
        )
    if data.get("apk"):
        parts.append("<h2>Android APK</h2>")
        parts.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in apk_lines(data["apk"])) + "</ul>")
    if data.get("targets"):
        parts.append("<h2>SoC targets</h2>")
        parts.append(
            _table(
                [
                    "artifact",
                    "target",
                    "chip",
                    "ops on NPU / off",
                    "checked on",
                    "samples",
                    "cos mean",
                    "gate",
                    "on-device ms",
                    "on-device peak MB",
                    "size MB",
                ],
                [
                    [
                        _e(t["artifact"]),
                        _e(t["target"]),
                        _e(t["chip"]),
                        f"{t['ops_on_npu']} / {t['ops_off_npu']}" if t["ops_on_npu"] is not None else "-",
                        _e(t["measured_on"] or "not on this host"),
                        t["samples"] or "-",
                        f"{t['cosine_mean']:.5f}" if t["cosine_mean"] is not None else "-",
                        _mark(t["passed"]),
                        _e(f"{t['device_inference_ms']} ({t['device']})") if t["device"] else "-",
                        t["device_peak_memory_mb"] if t["device"] else "-",
                        f"{t['size_bytes'] / 1e6:.2f}",
                    ]
                    for t in data["targets"]
                ],
            )
        )
        hosted = [f"<li>{_e(t['host_table'])}</li>" for t in data["targets"] if t.get("host_table")]
        if hosted:
            parts.append("<ul>" + "".join(hosted) + "</ul>")
    parts.append("<h2>Artifacts</h2>")
    parts.append(
        _table(
            ["artifact", "encoder", "runtime", "precision", "size MB"],
            [
                [_e(a["path"]), a["encoder"], a["runtime"], a["precision"], f"{a['size_bytes'] / 1e6:.2f}"]
                for a in data["artifacts"]
            ],
        )
    )
    parts.append("<h2>Tool versions</h2>")
    parts.append(_table(["tool", "version"], [[_e(k), _e(v)] for k, v in sorted(data["tools"].items())]))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mcad-export report: '
        f"{_e(data['student']['id'])}</title><style>{CSS}</style></head><body>{''.join(parts)}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
