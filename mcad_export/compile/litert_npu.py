"""`litert:qualcomm:<SoC>` and `litert:mediatek:<SoC>`: LiteRT ahead-of-time NPU compile of the TFLite encoders.

Runs ai_edge_litert's `aot_compile` with the vendor's compiler plugin. The plugins need the
vendor SDK libraries (QNN for Qualcomm, NeuroPilot for MediaTek), which the
`ai-edge-litert-sdk-qualcomm` / `-mediatek` packages download from the vendor at install time;
offline installs leave them empty. Without them the tool still "succeeds" and writes 0-byte
.tflite files, so every output is checked here: a failure becomes one CompileError naming the
missing library and how to get it, and the staged folder (0-byte files included) is discarded. A float32 text
graph is compiled cut at its token lookup (tflite_gather.py): the table stays on the host, beside the NPU model.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CompileError
from ..guard import verified_artifact
from ..isolated import run_in_child, run_isolated
from .registry import Target, register_backend

SDK_PACKAGES = {"qualcomm": "ai-edge-litert-sdk-qualcomm", "mediatek": "ai-edge-litert-sdk-mediatek"}
SDK_NAMES = {"qualcomm": "Qualcomm QNN SDK", "mediatek": "MediaTek NeuroPilot SDK"}


def sdk_status(vendor: str, soc: str) -> dict:
    """Whether the vendor SDK libraries the LiteRT plugin loads are installed (never downloads)."""
    module = SDK_PACKAGES[vendor].replace("-", "_")
    try:
        sdk = __import__(module)
    except ImportError:
        return {"present": False, "why": f"{SDK_PACKAGES[vendor]} is not installed"}
    try:
        if vendor == "mediatek":
            from ai_edge_litert.aot.vendors.mediatek import target as mtk

            path = sdk.path_to_sdk_libs(mtk.map_soc_to_np_version(mtk.SocModel(soc)))
        else:
            path = sdk.path_to_sdk_libs()
    except Exception as e:  # the SDK packages raise when their download step failed
        return {"present": False, "why": f"{SDK_PACKAGES[vendor]} has no SDK libraries ({e})"}
    if not path or not Path(path).is_dir() or not any(Path(path).iterdir()):
        return {
            "present": False,
            "why": f"{SDK_PACKAGES[vendor]} is installed but holds no SDK libraries "
            "(its install-time download did not happen)",
        }
    return {"present": True, "path": str(path)}


@run_in_child
def aot_compile_in_process(params: dict, arrays: dict) -> dict:
    """Child-process side: one aot_compile call; returns per-output sizes and failure messages."""
    import numpy as np
    from ai_edge_litert.aot.aot_compile import aot_compile

    if params["vendor"] == "mediatek":
        from ai_edge_litert.aot.vendors.mediatek import target as vendor_target
    else:
        from ai_edge_litert.aot.vendors.qualcomm import target as vendor_target
    result = aot_compile(
        params["model"], output_dir=params["out"], target=vendor_target.Target(vendor_target.SocModel(params["soc"]))
    )
    ok = [
        (str(model.path), str(model.partition_stats)) for _, model in result.models_with_backend if not model.in_memory
    ]
    failed = [_root_cause(message) for _, message in result.failed_backends]
    return {
        "ok": np.array([p for p, _ in ok], dtype=str),
        "stats": np.array([s for _, s in ok], dtype=str),
        "failed": np.array(failed, dtype=str),
    }


def _root_cause(message: str) -> str:
    """aot_compile points at a log file; the useful line is the first library-loading error in it."""
    match = re.search(r"See (\S+\.error)", message)
    if match and Path(match.group(1)).is_file():
        log = Path(match.group(1)).read_text(errors="replace")
        for pattern in (r"cannot open shared object file[^\n]*", r"Failed to load [^\n]*", r"ERROR: [^\n]*"):
            found = re.search(r"([^\s/]*\.so)?:? ?" + pattern, log)
            if found:
                return found.group(0).strip()
    return message.strip().splitlines()[0]


def _compile(root: Path, manifest: dict, target: Target, stage: Path, options: dict, say) -> list[dict]:

    vendor = target.backend.split(":")[1]
    soc = target.soc.get("litert_soc", target.soc["soc"])
    sdk = sdk_status(vendor, soc)
    sources = [a for a in manifest["artifacts"] if a["format"] == "tflite" and a["precision"] in ("fp32", "w8a8")]
    if not sources:
        raise CompileError(f"{target.id}: the export has no TFLite encoders; re-export without --no-tflite")
    records = []
    for source in sources:
        model, host, inputs = verified_artifact(root, source), None, source["inputs"]
        if source["encoder"] == "text":
            model, host, inputs = _cut_lookup(root, manifest, model, stage, source, target, say)
        say(f"{target.id}: LiteRT AOT compile of {source['path']}")
        out = run_isolated(
            aot_compile_in_process,
            {"model": str(model), "out": str(stage), "vendor": vendor, "soc": soc},
            {},
            what=f"LiteRT AOT compile for {target.soc['name']}",
        )
        if host is not None:
            model.unlink()  # the cut source; the compiled model and the table stay
        produced = [Path(p) for p in out["ok"]]
        empty = [p.name for p in stage.glob("*.tflite") if p.stat().st_size == 0]
        if len(out["failed"]) or empty or not produced:
            reason = str(out["failed"][0]) if len(out["failed"]) else "the compiler wrote 0-byte models"
            hint = (
                ""
                if sdk["present"]
                else f" {sdk['why']}: on a machine with internet, pip install "
                f"{SDK_PACKAGES[vendor]} (its setup downloads the {SDK_NAMES[vendor]} from the vendor) "
                f"and run again; nothing was written"
            )
            raise CompileError(
                f"{target.id}: LiteRT's {vendor} compiler plugin failed on {source['path']}: "
                f"{reason.rstrip('.')}.{hint}"
            )
        name = f"{source['encoder']}_encoder.{source['precision']}.npu.tflite"
        produced[0].rename(stage / name)
        records.append(
            {
                "name": f"{source['encoder']}_encoder",
                "encoder": source["encoder"],
                "format": "tflite-npu",
                "runtime": f"litert-npu-{vendor}",
                "precision": source["precision"],
                "target": target.id,
                "soc": target.soc,
                "inputs": inputs,
                "outputs": source["outputs"],
                "files": {"model": name, **(host["files"] if host else {})},
                **({"host_gather": {k: v for k, v in host.items() if k != "files"}} if host else {}),
                "source": source["path"],
                "partition_stats": str(out["stats"][0]),
                "sdk": sdk,
            }
        )
    return records


def _cut_lookup(root: Path, manifest: dict, src: Path, stage: Path, source: dict, target: Target, say):
    """(model to compile, host record or None, the record's inputs): the text graph cut at its token lookup and
    proved on tuning captions, where it has a float one (tflite_gather.py)."""
    from ..runtime.encoders import tflite_embed
    from .host_gather import host_table, moved_to_host, prove, prove_ids
    from .tflite_gather import cut_tflite_lookup

    cut = stage / f".{source['precision']}.cut.tflite"
    found = cut_tflite_lookup(src, cut)
    if found is None:
        return src, None, source["inputs"]
    values, io = found
    ids = prove_ids(root, manifest, None)
    host = {"reads_input_ids": io["reads_input_ids"], **host_table(values, stage, src.name)}
    host["parity"] = prove(lambda table=None: tflite_embed(cut if table else src, ids, table), values, stage)
    say(moved_to_host(target.id, source["path"], host))
    return cut, host, io["inputs"]


@register_backend(
    "litert:qualcomm", ("qualcomm",), "LiteRT AOT NPU compile with the Qualcomm plugin (needs the QNN SDK libraries)"
)
def compile_litert_qualcomm(root, manifest, target, stage, options, say):
    return _compile(root, manifest, target, stage, options, say)


@register_backend(
    "litert:mediatek",
    ("mediatek",),
    "LiteRT AOT NPU compile with the MediaTek plugin (needs the NeuroPilot SDK libraries)",
)
def compile_litert_mediatek(root, manifest, target, stage, options, say):
    return _compile(root, manifest, target, stage, options, say)
