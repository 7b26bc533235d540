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


# name -> (result file or files, renderer)
TABLES = {
    "embedded-onnx-gate": ("embedded_gate.json", lambda d: gate_table(d, "onnx")),
    "embedded-tflite-gate": ("embedded_gate.json", lambda d: gate_table(d, "tflite")),
    "goal-vit-b-32-epyc": ("goal_vit_b_32_random_epyc.json", goal_table),
    "minilm-onnx-gate": ("minilm_scenes_gate.json", lambda d: gate_table(d, "onnx")),
    "minilm-tflite-gate": ("minilm_scenes_gate.json", lambda d: gate_table(d, "tflite")),
    "perf-levers": (("perf_embedded.json", "perf_mobileclip2_s0_random.json"), perf_table),
    "text-kernels-vit-b-32": ("text_kernels_vit_b_32_random.json", text_kernels_table),
    "goal-mobileclip2-s0-epyc": ("goal_mobileclip2_s0_random_epyc.json", goal_table),
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
