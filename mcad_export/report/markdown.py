"""report.md: the same numbers as report.html, as tables a pull request can show."""

from __future__ import annotations


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def apk_lines(apk: dict) -> list[str]:
    """The APK record as a few plain sentences (Markdown and HTML show the same)."""
    parts = ", ".join(f"{k.replace('_', ' ')} {v / 2**20:.1f} MB" for k, v in apk["size_breakdown_bytes"].items() if v)
    return [
        f"{apk['path']}: {apk['size_bytes'] / 2**20:.1f} MB ({parts}); {apk['package']}, SDK "
        f"{apk['min_sdk']}-{apk['target_sdk']}, ABIs {', '.join(apk['abis'])}",
        f"signed {'+'.join(apk['signature']['schemes'])} ({apk['signature']['key']}), sha256 {apk['sha256']}",
        f"toolchain: {apk['toolchain'].get('source')}, {apk['toolchain'].get('d8')}, {apk['toolchain'].get('aapt2')}",
        f"not checked here: {apk.get('not_checked_here', '-')}",
    ]


def flips(record: dict) -> str:
    """The paired R@1 test's flips of one gate record, for a table cell."""
    paired = record.get("r1_paired")
    return f"{paired['lost']} / {paired['gained']} (p {paired['p_value']:.2g})" if paired else "-"


LANGUAGE_HEADER = ["artifact", "captions", "t2i R@1", "fp32 R@1", "R@1 lost / gained", "top-10 overlap"]


def language_rows(fidelity: list[dict]) -> list[list[str]]:
    """One row per gated artifact and caption language, for evaluation sets in several languages (the gate judges
    each: quantize/fidelity.py)."""
    return [
        [
            f"{r['artifact']} ({language})",
            str(part["captions"]),
            f"{part['recall_at_1']:.3f}",
            f"{part['recall_at_1_fp32']:.3f}",
            flips(part),
            f"{part['top10_overlap']:.3f}",
        ]
        for r in fidelity
        if r.get("passed") is not None
        for language, part in (r.get("per_language") or {}).items()
    ]


def _table(header, rows) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def render_markdown(data: dict) -> str:
    b, v = data["bench"], data["verdict"]
    lat, base = b["query_latency_ms"], b.get("baseline")
    out = [f"# mcad-export report: {data['student']['id']}", "", f"**{v['summary']}**", ""]
    if b.get("random_init"):
        out += ["Random-init student: sizes and latencies are real, accuracy numbers are meaningless.", ""]
    rows = [["this toolkit", f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{b['peak_rss_mb']:.1f}"]]
    if base:
        bl = base["query_latency_ms"]
        rows.append(
            [base["name"], f"{bl['p50']:.3f}", f"{bl['p90']:.3f}", f"{bl['p99']:.3f}", f"{base['peak_rss_mb']:.1f}"]
        )
    out += ["## Search latency (tokenize + text encoder + top-10)", ""]
    out += _table(["query path", "p50 ms", "p90 ms", "p99 ms", "peak RSS MB"], rows)
    if base:
        out += [f"Speed-up vs baseline: **{b['speedup_vs_baseline']:.1f}x** ({base['description']}).", ""]
    a = b["artifacts"]["text"]
    out += [
        f"Text encoder: `{a['path']}` ({a['precision']}, {a['runtime']}, fidelity gate: "
        f"{ {True: 'pass', False: 'MISS', None: 'not run'}[a['gate_passed']] }); gallery {b['gallery_size']:,} "
        f"({b['gallery']['kind']}, {b['gallery']['synthetic']:,} synthetic, index files "
        f"{sum(b['gallery']['index_bytes'].values()) / 1e6:.1f} MB); {b['threads']} thread(s).",
        "",
    ]
    out += ["## Memory of the query process (MB)", ""]
    out += _table(list(b["memory_breakdown_mb"]), [[f"{x:.1f}" for x in b["memory_breakdown_mb"].values()]])
    lim = b["physical_limit"]
    out += [
        "## Physical limit",
        "",
        f"max({lim['text_encoder_matmul_flops_at_query_tokens'] / 1e9:.4f} GFLOP at {lim['query_tokens_mean']:.1f} "
        f"tokens / {lim['text_encoder']['peak_gops']:.1f} {lim['text_encoder']['peak_kind']} GOP/s, "
        f"{lim['text_encoder']['bytes_per_query']['total'] / 1e6:.2f} MB / {lim['read_bandwidth_gbs']:.1f} GB/s) = "
        f"{lim['text_encoder_limit_ms']:.4f} ms ({lim['text_encoder']['bound']}-bound); "
        f"text-encoder efficiency {lim['text_encoder_efficiency']:.1%}, query efficiency "
        f"{lim['query_efficiency']:.1%}.",
        "",
    ]
    if b.get("index_sweep"):
        out += ["## Top-10 search latency vs gallery size", ""]
        out += _table(
            ["gallery", "index", "p50 ms", "p99 ms", "top-10 overlap vs exact"],
            [
                [
                    f"{r['gallery_size']:,}",
                    r["kind"],
                    f"{r['search_latency_ms']['p50']:.3f}",
                    f"{r['search_latency_ms']['p99']:.3f}",
                    "-" if r["top10_overlap_vs_flat"] is None else f"{r['top10_overlap_vs_flat']:.3f}",
                ]
                for r in b["index_sweep"]["rows"]
            ],
        )
    if data.get("retrieval"):
        r = data["retrieval"]
        out += [
            "## Retrieval, as a user sees it",
            "",
            "Top-5 held-out rows per caption (`*` marks the true image):",
            "",
        ]
        for rows in (r["rows"], [r["damage"]] if r.get("damage") else []):
            if not rows:
                continue
            names = list(rows[0]["found"])
            out += _table(
                ["caption", *names],
                [
                    [
                        row["caption"],
                        *(" ".join(f"{i}{'*' * (i == row['true'])}" for i in row["found"][n]) for n in names),
                    ]
                    for row in rows
                ],
            )
    if data["fidelity"]:
        out += ["## Fidelity gate", ""]
        if not data["recall_meaningful"]:
            out += ["Recall is not meaningful for this student; cosine is.", ""]
        degenerate = next((r for r in data["fidelity"] if r.get("degenerate")), None)
        if degenerate:
            out += [
                f"Degenerate fp32 embeddings ({'; '.join(degenerate.get('degenerate_because', []))}; mean pairwise "
                f"cosine image {degenerate['pairwise_cosine_mean_fp32']['image']}, text "
                f"{degenerate['pairwise_cosine_mean_fp32']['text']}): R@1 and top-10 overlap are noise, so the "
                "gate is cosine mean and min vs fp32.",
                "",
            ]
        if data.get("gate_sensitivity"):
            out += [data["gate_sensitivity"], ""]
        out += _table(
            ["artifact", "cos mean", "cos min", "t2i R@1", "fp32 R@1", "R@1 lost / gained", "top-10 overlap", "gate"],
            [
                [
                    r["artifact"],
                    f"{r['cosine_mean']:.5f}",
                    f"{r['cosine_min']:.4f}",
                    f"{r['recall_at_1']:.3f}",
                    f"{r['recall_at_1_fp32']:.3f}",
                    flips(r),
                    f"{r['top10_overlap']:.3f}",
                    "pass" if r["passed"] else "MISS",
                ]
                for r in data["fidelity"]
                if r.get("passed") is not None
            ],
        )
        if language_rows(data["fidelity"]):
            out += ["Per caption language (each language's captions against the whole gallery):", ""]
            out += _table(LANGUAGE_HEADER, language_rows(data["fidelity"]))
    if data.get("device_bench"):
        d = data["device_bench"]
        rec, lat = d["record"], d["record"]["latency_ms"]
        out += ["## On the device (the app's benchmark mode)", "", d["verdict"]["summary"], ""]
        out += _table(
            ["stage", "p50 ms", "p90 ms", "p99 ms"],
            [
                [s, *(f"{lat[s][p]:.3f}" for p in ("p50", "p90", "p99"))]
                for s in ("tokenize", "encode", "search", "total")
            ],
        )
        out += [
            f"{rec['queries']} queries x {rec['repeats']} over {rec['gallery_size']:,} images; VmRSS "
            f"{rec['memory_mb']['vm_rss']:.1f} MB, VmHWM {rec['memory_mb']['vm_hwm']:.1f} MB.",
            "",
        ]
    if data.get("apk"):
        out += ["## Android APK", "", *(f"- {line}" for line in apk_lines(data["apk"])), ""]
    if data.get("targets"):
        out += ["## SoC targets", ""]
        out += _table(
            [
                "artifact",
                "target",
                "ops on NPU / off",
                "checked on",
                "samples",
                "cos mean",
                "gate",
                "on-device ms / peak MB",
            ],
            [
                [
                    t["artifact"],
                    f"{t['target']} ({t['chip']})",
                    f"{t['ops_on_npu']} / {t['ops_off_npu']}" if t["ops_on_npu"] is not None else "-",
                    t["measured_on"] or "not on this host",
                    t["samples"] or "-",
                    f"{t['cosine_mean']:.5f}" if t["cosine_mean"] is not None else "-",
                    {True: "pass", False: "MISS", None: "-"}[t["passed"]],
                    f"{t['device_inference_ms']} / {t['device_peak_memory_mb']} ({t['device']})"
                    if t["device"]
                    else "-",
                ]
                for t in data["targets"]
            ],
        )
        hosted = [f"- {t['host_table']}" for t in data["targets"] if t.get("host_table")]
        out += hosted + [""] if hosted else []
    out += ["## Tool versions", ""] + _table(["tool", "version"], sorted(data["tools"].items()))
    return "\n".join(out)
