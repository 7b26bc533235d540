"""Console rendering of stage results (rich tables and one-line summaries). Stage functions return data; the CLI
and `run`'s observer print it through these, so a subcommand and the same stage inside `run` look alike."""

from __future__ import annotations

from pathlib import Path


def esc(value) -> str:
    """User- and file-supplied text for rich output: markup escaped, control characters and non-UTF-8 bytes shown
    as %XX (a file named `photo [1].jpg` or a query with `[/]` is printed, never interpreted)."""
    from rich.markup import escape

    from .runtime.index import encode_path

    return escape(encode_path(str(value)))


def export_summary(console, manifest: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{esc(manifest['student']['id'])} -> {esc(out)}")
    for col in ("artifact", "format", "precision", "size MB", "parity min cos", "status"):
        table.add_column(col)
    for a in manifest["artifacts"]:
        p = a.get("parity", {})
        table.add_row(
            esc(a["path"]),
            a["format"],
            a["precision"],
            f"{a['size_bytes'] / 1e6:.1f}",
            f"{p['cosine_min']:.7f}" if p else "-",
            "[green]ok[/]" if p.get("passed", True) else "[red]parity miss[/]",
        )
    console.print(table)
    for failure in manifest["export"].get("parity_failures", []):
        console.print(f"[yellow]warning:[/] {esc(failure)}")


def short_query(console, record: dict, directory: Path) -> None:
    from .manifest import read_manifest

    if "skipped" in record:
        console.print(f"short-query encoder: skipped ({esc(record['skipped'])})")
        return
    p = record["dynamic_length"]["parity"]
    if not record["dynamic_length"]["cut_after_eot"]:
        short = read_manifest(directory)["text"]["short_query"]
        cut = short["cut_parity"]
        console.print(
            f"short-query encoder: {record['path']} fed every position (bidirectional text tower: cut after "
            f"EOT it had min cosine {cut['cosine_min']:.4f}); min cosine {p['cosine_min']:.7f} vs the "
            f"full-length model over {p['samples']} captions"
        )
        twin = short.get("tflite")
        if twin:
            console.print(
                f"  static TFLite twin: {twin['artifact']}"
                if twin["shipped"]
                else f"  no static TFLite twin: {esc(twin['why'])}"
            )
        return
    console.print(
        f"short-query encoder: {record['path']} (min cosine {p['cosine_min']:.7f} vs the full-length model "
        f"over {p['samples']} captions, "
        f"{p['mean_tokens']} of {p['context_length']} tokens on average)"
    )
    for b in read_manifest(directory)["text"].get("length_buckets", []):
        console.print(
            f"  {b['tokens']}-token bucket: {b['path']} (holds {b['parity']['covers']:.0%} of the captions; "
            f"min cosine {b['parity']['cosine_min']:.7f} on those)"
        )


def short_layer(name: str) -> str:
    """LiteRT scope names carry full module paths; keep the last two module names."""
    parts = name.split(";")[0].split("/")[-2:]
    return "/".join(p.rsplit(".", 1)[-1] for p in parts)


def layer_label(entry: dict) -> str:
    """A damage entry's name for people: its module from the encoder on (`layers.3.mlp.fc2`) where known."""
    module = entry.get("module")
    return module.rpartition("encoder.")[2] if module else short_layer(entry["node"])


def quantized(console, records: list[dict], directory: Path) -> None:
    from rich.table import Table

    from .manifest import total_bytes

    table = Table(title=f"quantized artifacts in {esc(directory)}")
    for col in ("artifact", "size MB", "smaller", "kept float / int8", "tuning gate", "worst layer (SQNR dB)"):
        table.add_column(col, no_wrap=col == "artifact")
    for r in records:
        worst = r["layer_damage_top"][0] if r["layer_damage_top"] else None
        table.add_row(
            esc(r["path"]),
            f"{total_bytes(r) / 1e6:.2f}",
            f"{r['size_ratio_vs_fp32']:.2f}x",
            f"{len(r['recipe']['kept_float'])} / {len(r['recipe'].get('kept_int8', []))}",
            "[green]pass[/]"
            if r["tuning"]["passed"]
            else ("[red]rejected[/]" if r["tuning"]["auto"] else "[yellow]miss, kept[/]"),
            esc(f"{layer_label(worst)} ({worst['sqnr_db']})") if worst else "-",
        )
    console.print(table)
    for r in records:
        if not r["tuning"]["passed"]:
            last = r["tuning"]["steps"][-1]
            worst = ", ".join(f"{layer_label(d)} ({d['sqnr_db']} dB)" for d in r["layer_damage_top"][:3])
            detail = f"{esc('; '.join(last['misses']))} after keeping {len(last['kept_float'])} layer(s) in float; " + (
                f"worst layers: {esc(worst)}" if worst else "no per-layer data for this recipe"
            )
            if r["tuning"]["auto"]:
                console.print(f"[yellow]rejected[/] {esc(r['path'])} (not kept): {detail}")
            else:
                console.print(
                    f"[yellow]kept[/] {esc(r['path'])} although it misses the tuning gate (--no-auto): "
                    f"{detail}; `mcad-export verify` judges it on the held-out set"
                )


def fidelity(console, directory) -> None:
    from rich.table import Table

    from .contract import FIDELITY_REPORT
    from .records import read_fidelity

    path = Path(directory) / FIDELITY_REPORT
    records = read_fidelity(Path(directory))
    if not records:
        return
    table = Table(title=f"fidelity vs PyTorch fp32 ({esc(path)})")
    for col in ("artifact", "cos mean", "cos min", "t2i R@1", "fp32 R@1", "R@10", "top-10 overlap", "gate"):
        table.add_column(col)
    for r in records:
        if r.get("passed") is None:
            table.add_row(esc(r["artifact"]), *["-"] * 6, esc(r.get("skipped", "skipped")))
            continue
        table.add_row(
            esc(r["artifact"]),
            f"{r['cosine_mean']:.5f}",
            f"{r['cosine_min']:.4f}",
            f"{r['recall_at_1']:.3f}",
            f"{r['recall_at_1_fp32']:.3f}",
            f"{r['recall_at_10']:.3f}",
            f"{r['top10_overlap']:.3f}",
            "[green]pass[/]" if r["passed"] else "[red]MISS[/]",
        )
    degenerate = next((r for r in records if r.get("degenerate")), None)
    if degenerate:
        table.caption = (
            f"degenerate student ({'; '.join(degenerate.get('degenerate_because', []))}; fp32 pairwise "
            f"cosine {degenerate['pairwise_cosine_mean_fp32']}): R@1 and top-10 overlap are noise, "
            "gated on cosine mean and min alone"
        )
    console.print(table)


def compiled(console, records: list[dict], directory: Path) -> None:
    from rich.table import Table

    table = Table(title=f"compiled artifacts in {esc(directory)}")
    for col in ("artifact", "target", "size MB", "ops on NPU", "ops off NPU", "on-device ms"):
        table.add_column(col, no_wrap=col == "artifact")
    for r in records:
        ops, device = r.get("ops", {}), r.get("device_profile", {})
        table.add_row(
            esc(r["path"]),
            r["target"],
            f"{r['size_bytes'] / 1e6:.2f}",
            str(ops.get("htp", ops.get("npu", "-"))),
            str(ops.get("cpu", "-")),
            str(device.get("inference_ms", "-")),
        )
    console.print(table)
    if records:
        fidelity(console, directory)


def index(console, meta: dict, directory: Path) -> None:
    skipped = f", {meta['skipped']} unreadable file(s) skipped" if meta["skipped"] else ""
    console.print(
        f"index: {meta['count']:,} images ({meta['kind']}, {meta['dim']}-d) from {esc(meta['source'])} "
        f"-> {esc(Path(directory) / 'index')}{skipped}"
    )
    for s in meta.get("skipped_files", [])[:5]:
        console.print(f"  [yellow]skipped[/] {esc(s['path'])}: {esc(s['reason'])}")


def search(console, text: str, searcher, hits, times) -> None:
    from rich.table import Table

    shown = text if len(text) <= 80 else text[:77] + "..."
    table = Table(
        title=f"{esc(repr(shown))} ({esc(searcher.artifact['path'])}, {len(searcher.index):,} images, "
        f"{times['total_ms']:.1f} ms)"
    )
    for col in ("rank", "score", "path"):
        table.add_column(col, no_wrap=col == "path", overflow="fold" if col == "path" else "ellipsis")
    for h in hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", esc(h.path))
    console.print(table)


def bench(console, report: dict, directory: Path) -> None:
    lat, budget = report["query_latency_ms"], report["budget"]
    text = report["artifacts"]["text"]
    console.print(
        f"text encoder {esc(text['path'])} ({text['precision']}, {text['runtime']}; fidelity gate: "
        f"{ {True: 'pass', False: 'MISS', None: 'not run'}[text['gate_passed']] })"
    )
    console.print(
        f"query (tokenize + encoder + top-10 over {report['gallery_size']:,} images"
        f"{', ' + format(report['gallery']['synthetic'], ',') + ' synthetic' if report['gallery']['synthetic'] else ''}"
        f", {report['threads']} thread(s)): p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms; peak RSS {report['peak_rss_mb']:.1f} MB"
    )
    if report["baseline"]:
        console.print(
            f"baseline {esc(report['baseline']['name'])}: p50 {report['baseline']['query_latency_ms']['p50']:.2f} "
            f"ms -> {report['speedup_vs_baseline']:.1f}x faster"
        )
    limit = report["physical_limit"]
    text_limit = limit["text_encoder"]
    console.print(
        f"physical limit of the text encoder {limit['text_encoder_limit_ms']:.3f} ms, {text_limit['bound']}-"
        f"bound: {text_limit['compute_ms']:.3f} ms compute at {text_limit['peak_gops']:.0f} "
        f"{text_limit['peak_kind']} GOP/s, {text_limit['memory_ms']:.3f} ms to read "
        f"{text_limit['bytes_per_query']['total'] / 1e6:.1f} MB at {limit['read_bandwidth_gbs']:.1f} GB/s; "
        f"text-encoder efficiency {limit['text_encoder_efficiency']:.1%}"
    )
    verdict = "[green]PASS[/]" if budget["passed"] else "[red]MISS[/]"
    console.print(
        f"budget {budget['memory_mb']:g} MB / {budget['latency_ms']:g} ms: {verdict} "
        f"({esc(Path(directory) / 'reports' / 'bench.json')})"
    )


def report(console, outputs: dict) -> None:
    console.print("report: " + ", ".join(esc(p) for p in outputs.values()))


def bundle(console, result: dict) -> None:
    text = result["encoders"]["text"]
    console.print(
        f"bundle: {esc(result['assets'])} ({len(result['files'])} files, {result['written']} written): "
        f"{esc(text['file'])} on {text['runtime']}/{text['accelerator']}, {result['index']['count']} images "
        f"({result['thumbnails']['count']} thumbnails), "
        f"resident estimate {result['budget']['resident_estimate_mb']} MB"
    )


def apk(console, record: dict, out) -> None:
    sizes = record["size_breakdown_bytes"]
    parts = ", ".join(f"{k.replace('_', ' ')} {v / 2**20:.1f}" for k, v in sizes.items() if v)
    console.print(
        f"APK: {esc(Path(out) / record['path'])} ({record['size_bytes'] / 2**20:.1f} MB: {parts} MB), "
        f"{record['package']}, SDK {record['min_sdk']}-{record['target_sdk']}, {', '.join(record['abis'])}, "
        f"signed {'+'.join(record['signature']['schemes'])} ({record['signature']['key']}), sha256 {record['sha256']}"
    )
    console.print(f"install: adb install -r {esc(Path(out) / record['path'])}")


def targets(console) -> None:
    from rich.table import Table

    from .compile.targets import all_targets, describe

    table = Table(title="compile targets (mcad-export compile DIR --target T)")
    for col in ("target", "chip", "SoC", "HTP arch", "soc_model", "AI Hub device"):
        table.add_column(col, no_wrap=col == "target")
    for t in all_targets():
        table.add_row(
            t.id,
            t.soc["name"],
            t.soc["soc"],
            f"v{t.soc['htp_arch']}" if "htp_arch" in t.soc else "-",
            str(t.soc.get("soc_model", "-")),
            t.soc.get("aihub_device", "-"),
        )
    console.print(table)
    for backend in sorted({t.backend for t in all_targets()}):
        console.print(f"  {backend}: {describe(backend)}")
