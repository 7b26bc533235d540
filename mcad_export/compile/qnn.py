"""`qnn:<SoC>`: offline Snapdragon HTP compile with onnxruntime-qnn (no device, no cloud).

Per encoder: a static batch-1 copy of the fp32 ONNX -> onnxruntime's QNN preprocessing (GELU and
LayerNorm fusions HTP has kernels for) -> QDQ with 16-bit activations and 8-bit weights (w8a16,
what HTP runs well and what kept the causal mask exact enough here) -> an ONNX model whose single
EPContext node embeds the HTP context binary for that SoC. Nodes HTP cannot take would run on the
phone's CPU: that fails the compile unless allowed, and the count is recorded either way. The
QNN EP runs in a child process (isolated.py): a native abort fails one step, not the pipeline.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from ..defaults import NUM_CALIB
from ..errors import CompileError
from ..guard import verified_artifact
from ..isolated import run_in_child, run_isolated
from .registry import Target, register_backend, static_sources

QNN_RUNTIME = "qnn-htp"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def qnn_provider_options(soc: dict) -> dict:
    return {"backend_type": "htp", "htp_arch": str(soc["htp_arch"]), "soc_model": str(soc["soc_model"])}


def qnn_session(model_path, soc: dict, *, allow_cpu_fallback: bool, context_path=None):
    """An onnxruntime session on the QNN HTP backend (on x86 hosts: the HTP simulator)."""
    import onnxruntime as ort
    import onnxruntime_qnn

    if not any(d.ep_name == "QNN" for d in ort.get_ep_devices()):
        ort.register_execution_provider_library("QNN", onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNN"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_provider_for_devices(devices, qnn_provider_options(soc))
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "0" if allow_cpu_fallback else "1")
    if context_path is not None:
        options.add_session_config_entry("ep.context_enable", "1")
        options.add_session_config_entry("ep.context_file_path", str(context_path))
        options.add_session_config_entry("ep.context_embed_mode", "1")
    return ort.InferenceSession(str(model_path), options)


def static_batch_one(src: Path, dst: Path) -> None:
    import onnx

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # HTP graphs have static shapes
    # Workaround: onnxruntime 1.32's qnn_preprocess_model does dict.update(model.metadata_props), which
    # fails on the protobuf repeated field ("cannot convert dictionary update sequence element");
    # onnxsim writes such props, so they are dropped from this intermediate copy.
    del model.metadata_props[:]
    onnx.save(model, str(dst))


def quantize_for_htp(src: Path, dst: Path, names: list[str], calib: np.ndarray, work: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from ..logs import quiet_root_logger
    from ..quantize.calibration import ArrayReader

    static, fused = work / f"{dst.stem}.static.onnx", work / f"{dst.stem}.fused.onnx"
    static_batch_one(src, static)
    if not qnn_preprocess_model(static, fused, fuse_layernorm=True):
        fused = static  # nothing to fuse
    with quiet_root_logger():  # the quantizer logs generic pre-processing advice at WARNING on every call
        config = get_qnn_qdq_config(
            str(fused), ArrayReader(names, calib), activation_type=QuantType.QUInt16, weight_type=QuantType.QUInt8
        )
        quantize(str(fused), str(dst), config)


@run_in_child
def compile_context_in_process(params: dict, arrays: dict) -> dict:
    """Child-process side: compile with CPU fallback off; only if HTP refuses a node, compile again with it on
    to learn which nodes would stay on the CPU (their op types go into the error or the manifest)."""
    import onnx

    context = Path(params["context"])
    for allow in (False, True):
        context.unlink(missing_ok=True)  # the QNN EP refuses to overwrite
        try:
            qnn_session(params["qdq"], params["soc"], allow_cpu_fallback=allow, context_path=context)
            break
        except Exception as e:
            if allow or "assigned to the default CPU EP" not in str(e):
                raise
    graph = onnx.load(str(context)).graph
    outside = [n.op_type for n in graph.node if n.op_type != "EPContext"]
    compute = [n.op_type for n in onnx.load(str(params["qdq"])).graph.node if n.op_type not in QDQ_OPS]
    return {
        "cpu_ops": np.array(outside, dtype=str),
        "compute_ops": np.array([len(compute)]),
        "contexts": np.array([sum(n.op_type == "EPContext" for n in graph.node)]),
    }


@run_in_child
def simulate_in_process(params: dict, arrays: dict) -> dict:
    """Child-process side: run a compiled model on the x86 HTP simulator, one sample at a time (batch 1)."""
    session = qnn_session(params["model"], params["soc"], allow_cpu_fallback=params.get("allow_cpu_fallback", False))
    from ..runtime.encoders import text_feed

    names = [i.name for i in session.get_inputs()]
    x = arrays["x"]
    return {"embeds": np.concatenate([session.run(None, text_feed(names, x[i : i + 1]))[0] for i in range(len(x))])}


@register_backend(
    "qnn", ("qualcomm",), "offline HTP context binary via onnxruntime-qnn; accuracy on the x86 HTP simulator"
)
def compile_qnn(root: Path, manifest: dict, target: Target, stage: Path, options: dict, say) -> list[dict]:
    from ..quantize.calibration import calibration_inputs

    _require_qnn()
    calib = calibration_inputs(
        root,
        manifest,
        num_calib=options.get("num_calib", NUM_CALIB),
        allow_small=options.get("allow_small_calibration", False),
    )
    records = []
    for source, stem, tokens in static_sources(manifest):  # HTP graphs are static
        x = calib.for_encoder(source["encoder"])
        # A length bucket is calibrated on the same captions cut to its length (what it is fed: ids padded after EOT).
        x = np.ascontiguousarray(x[:, :tokens]) if tokens else x
        record = _compile_one(
            verified_artifact(root, source),
            source,
            stem,
            x,
            target,
            stage,
            options,
            say,
            source=source["path"],
            calibration=calib.source,
        )
        if tokens:
            record["length_bucket"] = {"tokens": tokens, "covers": source["parity"]["covers"]}
        records.append(record)
    return records


def _compile_one(
    src: Path, fp32: dict, stem: str, calib: np.ndarray, target: Target, stage: Path, options: dict, say, **provenance
) -> dict:

    encoder, names = fp32["encoder"], [i["name"] for i in fp32["inputs"]]
    qdq, context = stage / f"{stem}.w8a16.qdq.onnx", stage / f"{stem}.qnn_ctx.onnx"
    say(f"{target.id}: quantizing {stem} for HTP (w8a16)")
    quantize_for_htp(src, qdq, names, calib, stage)
    say(f"{target.id}: compiling {stem} to an HTP context binary")
    out = run_isolated(
        compile_context_in_process,
        {"qdq": str(qdq), "context": str(context), "soc": target.soc},
        {},
        what=f"QNN HTP compile of {stem} for {target.soc['soc']}",
    )
    cpu_ops = [str(op) for op in out["cpu_ops"]]
    if cpu_ops and not options.get("allow_cpu_fallback"):
        counts = ", ".join(f"{op} x{n}" for op, n in collections.Counter(cpu_ops).most_common())
        raise CompileError(
            f"{target.id}: {len(cpu_ops)} op(s) of the {encoder} encoder would run on the CPU, "
            f"not the HTP ({counts}); pass --allow-cpu-fallback to accept that"
        )
    if not context.is_file() or context.stat().st_size == 0:
        raise CompileError(f"{target.id}: the QNN EP wrote no context model for {stem}")
    return {
        "name": stem,
        "encoder": encoder,
        "format": "onnx-qnn-context",
        "runtime": QNN_RUNTIME,
        "precision": "w8a16",
        "target": target.id,
        "soc": target.soc,
        "inputs": [{**i, "shape": [1, *i["shape"][1:]]} for i in fp32["inputs"]],
        "outputs": [{**fp32["outputs"][0], "shape": [1, *fp32["outputs"][0]["shape"][1:]]}],
        "files": {"context_model": context.name, "qdq_model": qdq.name},
        **provenance,
        "ops": {
            "compute": int(out["compute_ops"][0]),
            "htp": int(out["compute_ops"][0]) - len([op for op in cpu_ops if op not in QDQ_OPS]),
            "cpu": len(cpu_ops),
            "cpu_op_types": sorted(set(cpu_ops)),
            "contexts": int(out["contexts"][0]),
        },
        "recipe": {
            "tool": "onnxruntime.quantization get_qnn_qdq_config + QNN EP context",
            "activations": "uint16",
            "weights": "uint8",
            "preprocess": "qnn_preprocess_model(fuse_layernorm=True)",
            "provider_options": qnn_provider_options(target.soc),
        },
    }


def _require_qnn() -> None:
    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        raise CompileError(
            "qnn targets need onnxruntime-qnn (the QNN EP plugin with the HTP host libraries and "
            "simulator): pip install 'mcad-export[qnn]' (Linux x86-64 or Windows)"
        ) from None
