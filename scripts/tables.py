"""The measured tables of README and docs/, rendered from the committed result files (benchmarks/results/*.json).

    .venv/bin/python scripts/tables.py          # rewrite every table between its markers
    .venv/bin/python scripts/tables.py --check  # exit 1 naming each table that differs from its file

A table lives between `<!-- table:NAME -->` and `<!-- /table -->` in a Markdown file; NAME is a key of TABLES,
which names the result file and the function that renders it. tests/test_tables.py runs the check, so a
published number can only change together with the file it comes from.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DOCUMENTS = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"(<!-- table:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _gate_rows(data: dict, fmt: str) -> list[dict]:
    records = [r for r in data["records"] if (r["artifact"].startswith("tflite/")) == (fmt == "tflite")]
    return sorted(records, key=lambda r: (r["encoder"] != "image", r["precision"] != "fp32", r["artifact"]))


def _flips(record: dict) -> str:
    paired = record.get("r1_paired")
    if not paired or (paired["lost"] == 0 and paired["gained"] == 0):
        return "-"
    return f"{paired['lost']} / {paired['gained']} (p {paired['p_value']:.2g})"


def gate_table(data: dict, fmt: str) -> str:
    lines = [
        "| artifact | size MB | smaller | cos mean | cos min | t2i R@1 | R@5 | R@10 | top-10 overlap "
        "| R@1 lost / gained | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _gate_rows(data, fmt):
        lines.append(
            f"| `{r['artifact']}` | {r['size_bytes'] / 1e6:.2f} | {r['size_ratio_vs_fp32']:.2f}x | "
            f"{r['cosine_mean']:.5f} | {r['cosine_min']:.4f} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | "
            f"{r['recall_at_10']:.3f} | {r['top10_overlap']:.3f} | {_flips(r)} | "
            f"{'pass' if r['passed'] else 'fail'} |"
        )
    for r in data["rejected"]:
        if (r["artifact"].startswith("tflite/")) != (fmt == "tflite"):
            continue
        step = r["last_step"]
        lines.append(
            f"| `{r['artifact']}` | - | - | {step['cosine_mean']:.4f}* | {step['cosine_min']:.4f}* | "
            f"{step['recall_at_1']:.3f}* | - | - | {step['top10_overlap']:.3f}* | - | rejected |"
        )
    return "\n".join(lines) + "\n"


def goal_table(data: dict) -> str:
    """goal_bench.py's rows: one bench per text encoder on one host, fastest first."""
    degenerate = {r["artifact"]: r.get("degenerate") for r in data.get("fidelity", [])}
    rows = sorted(data["rows"], key=lambda r: r["query_p50_ms"])
    fastest = next((r["text_encoder"] for r in rows if r["gate_passed"]), None)
    lines = [
        "| text encoder | query p50 ms | tokenize / encode / search ms | encoder alone / floor ms (x floor) "
        "| encode in the query (x floor) | peak RSS MB | speed-up vs eager | gate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stages = r["stages_p50_ms"]
        alone = r["encoder_times_limit"] * r["encoder_limit_ms"]
        gate = "pass" if r["gate_passed"] else "fail"
        if r["gate_passed"] and degenerate.get(r["text_encoder"]):
            gate += " (degenerate: cosine)"
        name = f"`{r['text_encoder']}`" + (" (fastest passing)" if r["text_encoder"] == fastest else "")
        lines.append(
            f"| {name} | {r['query_p50_ms']:.2f} | {stages['tokenize_ms']:.3f} / {stages['encode_ms']:.2f} / "
            f"{stages['search_ms']:.2f} | {alone:.2f} / {r['encoder_limit_ms']:.2f} ({r['encoder_times_limit']:.2f}x) | "
            f"{stages['encode_ms']:.2f} ({r['encode_over_limit']:.2f}x) | {r['peak_rss_mb']:.1f} | "
            f"{r['speedup_vs_eager']:.1f}x | {gate} |"
        )
    return "\n".join(lines) + "\n"


def text_kernels_table(data: dict) -> str:
    """text_kernels.py: p50 ms of each kernel at each token count, MB read per query, cosine vs fp32."""
    tokens = [str(t) for t in data["tokens"]]
    lines = [
        f"| kernel | {' | '.join(tokens)} | MB read (12 tokens) | cos mean | cos min |",
        "|---|" + "---|" * (len(tokens) + 3),
    ]
    for r in data["rows"]:
        times = " | ".join(f"{r['p50_ms'][t]:.2f}" for t in tokens)
        lines.append(
            f"| {r['kernel']} | {times} | {r['mb_read_per_query_at_12_tokens']:.1f} | {r['cosine_mean']:.5f} | "
            f"{r['cosine_min']:.5f} |"
        )
    return "\n".join(lines) + "\n"


STUDENT_NAMES = {"embedded": "embedded", "mobileclip2_s0_random": "MobileCLIP2-S0 random"}


def perf_table(runs: list[dict]) -> str:
    """perf_levers.py: one bench per configuration (before / index / after / also) per student."""
    lines = [
        "| student | config | text encoder | index | query p50 ms | tokenize / encode / search ms | peak RSS MB "
        "| eager ms | speed-up | limit ms | budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data in runs:
        for r in data["rows"]:
            s = r["stages_p50_ms"]
            lines.append(
                f"| {STUDENT_NAMES.get(data['student'], data['student'])} | {r['config']} | `{r['text_encoder']}` | "
                f"{r['index']} | {r['query_p50_ms']:.3f} | {s['tokenize_ms']:.3f} / {s['encode_ms']:.3f} / "
                f"{s['search_ms']:.3f} | {r['peak_rss_mb']:.1f} | {r['baseline_p50_ms']:.2f} | "
                f"{r['speedup_vs_baseline']:.2f}x | {r['limit_ms']:.3g} | {'pass' if r['budget_passed'] else 'miss'} |"
            )
    return "\n".join(lines) + "\n"


def litert_kernel_table(data: dict) -> str:
    """litert_text_kernel.py: each one-query text forward (a fresh process each) and the Linear layers alone."""
    tokens = [str(t) for t in data["tokens"]]
    lines = [
        f"| kernel | {' | '.join(f'{t} tokens ms' for t in tokens)} | cos vs fp32 | peak RSS MB | file MB |",
        "|---|" + "---|" * (len(tokens) + 3),
    ]
    for r in data["rows"]:
        times = " | ".join(f"{r['p50_ms'][t]:.2f}" if t in r["p50_ms"] else "" for t in tokens)
        cos = sorted(r["cosine_vs_fp32"].values())
        cos_text = f"{cos[0]:.5f}" if cos[0] == cos[-1] else f"{cos[0]:.5f}-{cos[-1]:.5f}"
        lines.append(f"| {r['kernel']} | {times} | {cos_text} | {r['peak_rss_mb']:.1f} | {r['file_mb']:.1f} |")
    alone = data["linear_layers_alone"]
    for r in alone["rows"]:
        cells = " | ".join(
            f"{r['p50_ms'][t]:.2f} ({r['gop_per_s'][t]:.0f} GOP/s, {r['times_matmul_floor'][t]:.2f}x floor)"
            for t in tokens
        )
        lines.append(f"| Linear layers alone ({alone['weights_mb']} MB int8): {r['kernel']} | {cells} | | | |")
    return "\n".join(lines) + "\n"


def quantization_variants_table(data: dict) -> str:
    """quantization_variants.py: size and one-thread latency of every artifact (its gate verdict where recall means
    something: a random-init student's verdicts are not shown)."""
    gated = data.get("accuracy_meaningful", True)
    lines = [
        "| artifact | precision | size MB | p50 ms | min ms |" + (" gate |" if gated else ""),
        "|---|---|---|---|---|" + ("---|" if gated else ""),
    ]
    for r in data["rows"]:
        gate = {True: " pass |", False: " fail |", None: " - |"}[r.get("gate_passed")] if gated else ""
        lines.append(
            f"| `{r['artifact']}` | {r['precision']} | {r['size_mb']:.2f} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} |{gate}"
        )
    return "\n".join(lines) + "\n"


def _student_label(result: dict) -> str:
    return result["student"] + (" (random init)" if result["random_init"] else "")


def search_encoders_table(runs: list[dict]) -> str:
    """search_latency.py: the whole query path per text encoder, 100,000-image flat index, one thread."""
    lines = [
        "| student | text encoder | size MB | encoder p50 ms | top-10 p50 ms | query p50 ms | query p99 ms "
        "| peak RSS MB | PyTorch p50 ms | speed-up | budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        base = r["baseline"]["query_latency_ms"]["p50"]
        for t in r["text_encoders"]:
            lines.append(
                f"| {_student_label(r)} | `{t['artifact']}` | {t['size_mb']} | {t['encode_p50_ms']:.2f} "
                f"| {t['search_p50_ms']:.2f} | {t['query_p50_ms']:.2f} | {t['query_p99_ms']:.2f} "
                f"| {t['peak_rss_mb']:.0f} | {base:.1f} | {t['speedup_vs_baseline']:.2f}x "
                f"| {'pass' if t['budget_passed'] else 'miss'} |"
            )
    return "\n".join(lines) + "\n"


def search_index_table(runs: list[dict]) -> str:
    """search_latency.py's sweep: each index kind over 1k-1M images drawn around the student's embeddings."""
    lines = [
        "| gallery drawn around | dim | gallery | index | p50 ms | p99 ms | scanned MB | top-10 overlap vs exact "
        "| build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for row in r.get("index_sweep") or []:
            dim = row["float_bytes"] // row["gallery_size"] // 4
            overlap = "-" if row["top10_overlap_vs_flat"] is None else f"{row['top10_overlap_vs_flat']:.3f}"
            latency = row["search_latency_ms"]
            lines.append(
                f"| {_student_label(r)} | {dim} | {row['gallery_size']:,} | {row['kind']} | {latency['p50']:.3f} "
                f"| {latency['p99']:.3f} | {row['scan_bytes'] / 1e6:.1f} | {overlap} | {row['build_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def ray_table(data: dict) -> str:
    """ray_index.py: the gallery encoded by the local engine and by Ray actors, best of the repeats."""
    lines = [
        "| engine | workers x threads | wall s | images/s | busy images/s per worker | peak RSS per worker |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        busy = f"{r['images_per_worker_busy_s']:.0f}" if "images_per_worker_busy_s" in r else "-"
        rss = " + ".join(f"{m:.0f}" for m in r.get("peak_rss_mb_per_worker", []))
        engine = "local (this process)" if r["engine"] == "local" else r["engine"]
        lines.append(
            f"| {engine} | {r['workers']} x {r['threads']} | {r['seconds']:.2f} | {r['images_per_s']:.0f} | {busy} "
            f"| {rss + ' MB' if rss else '-'} |"
        )
    return "\n".join(lines) + "\n"


def embedded_recall_table(data: list[dict]) -> str:
    """The embedded student's held-out recall: its card (PyTorch, teacher) and the gate's record of the ONNX export."""
    card, gate = data
    recall = card["heldout_recall"]
    onnx = next(r for r in gate["records"] if r["artifact"] == "text_encoder.onnx")
    lines = ["| model | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@10 |", "|---|---|---|---|---|---|"]
    for label, key, mark in (("student (PyTorch)", "student_fp32", ""), ("teacher", "teacher_fp32", "*")):
        r = recall[key]
        lines.append(
            f"| {label} | {r['t2i_r1']:.3f}{mark} | {r['t2i_r5']:.3f}{mark} | {r['t2i_r10']:.3f}{mark} "
            f"| {r['i2t_r1']:.3f}{mark} | {r['i2t_r10']:.3f}{mark} |"
        )
        if key == "student_fp32":
            lines.append(
                f"| student (exported ONNX + torch-free tokenizer) | {onnx['recall_at_1']:.3f} | "
                f"{onnx['recall_at_5']:.3f} | {onnx['recall_at_10']:.3f} | | |"
            )
    return "\n".join(lines) + "\n"


SEARCH_RESULTS = ("search_embedded.json", "search_mobileclip2_s0_random.json", "search_vit_b_32_random.json")

# name -> (result file or files, renderer)
TABLES = {
    "embedded-onnx-gate": ("embedded_gate.json", lambda d: gate_table(d, "onnx")),
    "embedded-tflite-gate": ("embedded_gate.json", lambda d: gate_table(d, "tflite")),
    "goal-vit-b-32-epyc": ("goal_vit_b_32_random_epyc.json", goal_table),
    "minilm-onnx-gate": ("minilm_scenes_gate.json", lambda d: gate_table(d, "onnx")),
    "minilm-tflite-gate": ("minilm_scenes_gate.json", lambda d: gate_table(d, "tflite")),
    "minilm-opt-in-onnx-gate": ("minilm_scenes_opt_in_gate.json", lambda d: gate_table(d, "onnx")),
    "perf-levers": (("perf_embedded.json", "perf_mobileclip2_s0_random.json"), perf_table),
    "text-kernels-vit-b-32": ("text_kernels_vit_b_32_random.json", text_kernels_table),
    "goal-vit-b-32-xeon": ("goal_vit_b_32_random.json", goal_table),
    "goal-clip-size-xeon": ("goal_clip_size_scenes.json", goal_table),
    "clip-size-gate": ("clip_size_scenes_gate.json", lambda d: gate_table(d, "onnx")),
    "siglip-onnx-gate": ("siglip_scenes_gate.json", lambda d: gate_table(d, "onnx")),
    "goal-mobileclip2-s0-xeon": ("goal_mobileclip2_s0_random.json", goal_table),
    "goal-mobileclip2-s0-epyc": ("goal_mobileclip2_s0_random_epyc.json", goal_table),
    "goal-siglip2-b16-epyc": ("goal_vit_b_16_siglip2_random_epyc.json", goal_table),
    "litert-kernel-vit-b-32": ("litert_text_kernel_vit_b_32_random.json", litert_kernel_table),
    "litert-kernel-mobileclip2-s0": ("litert_text_kernel_mobileclip2_s0_random.json", litert_kernel_table),
    "quantization-variants-mobileclip2-s0": (
        "quantization_variants_mobileclip2_s0_random.json",
        quantization_variants_table,
    ),
    "embedded-recall": (
        ("../../mcad_export/assets/default_student/card.json", "embedded_gate.json"),
        embedded_recall_table,
    ),
    "ray-index": ("ray_index.json", ray_table),
    "search-encoders": (SEARCH_RESULTS, search_encoders_table),
    "search-index-sweep": (SEARCH_RESULTS, search_index_table),
}


def render(name: str) -> str:
    files, renderer = TABLES[name]
    if isinstance(files, str):
        return renderer(json.loads((RESULTS / files).read_text(encoding="utf-8")))
    return renderer([json.loads((RESULTS / f).read_text(encoding="utf-8")) for f in files])


def sync(check: bool) -> list[str]:
    """Rewrites (or, with check, compares) every marked table; returns '<document>: <table>' for each that differed."""
    differing = []
    for document in DOCUMENTS:
        if not document.is_file():
            continue
        text = document.read_text(encoding="utf-8")

        def replace(match, document=document):
            name = match["name"]
            if name not in TABLES:
                raise SystemExit(f"{document}: unknown table {name!r}; add it to scripts/tables.py TABLES")
            body = render(name)
            if body != match["body"]:
                differing.append(f"{document.relative_to(REPO)}: {name}")
            return match.group(1) + body + match.group(4)

        new = MARKER.sub(replace, text)
        if not check and new != text:
            document.write_text(new, encoding="utf-8")
    return differing


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    changed = sync(check)
    for line in changed:
        print(("differs from its file: " if check else "rewrote: ") + line)
    sys.exit(1 if check and changed else 0)
