"""`qnn:<SoC>`: offline Snapdragon HTP compile with onnxruntime-qnn (no device, no cloud).

Per encoder: a static batch-1 copy of the fp32 ONNX -> onnxruntime's QNN preprocessing (GELU and
LayerNorm fusions HTP has kernels for) -> QDQ with 16-bit activations and 8-bit weights
(w8a16, what HTP runs well and what kept the causal mask exact enough here; per output channel, then int16
weights, where the tuning split misses the gate: htp_recipe.py) -> an ONNX model whose single
EPContext node embeds the HTP context binary for that SoC. Nodes HTP cannot take would run on the
phone's CPU: that fails the compile unless allowed, and the count is recorded either way. The
QNN EP runs in a child process (isolated.py): a native abort fails one step, not the pipeline.
"""

from __future__ import annotations

import collections
import contextlib
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


@contextlib.contextmanager
def htp_graph(src: Path, work: Path, table_dir: Path | None = None, prove_ids: np.ndarray | None = None):
    """A static batch-1 copy of `src` with onnxruntime's QNN fusions, which every weight step quantizes, and the
    host token table's record (None for a graph without a token lookup); with `table_dir` the graph starts at the
    embeddings (host_gather.py), proved on `prove_ids`. It lives in a scratch folder inside `work` only while it is
    used (each copy is the fp32 model's size)."""
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    from .host_gather import static_text_graph

    with static_text_graph(src, work, table_dir, prove_ids) as (static, host):
        fused = static.parent / "fused.onnx"
        graph = fused if qnn_preprocess_model(static, fused, fuse_layernorm=True) else static  # else nothing to fuse
        yield graph, host


def quantize_for_htp(graph: Path, dst: Path, names: list[str], calib: np.ndarray, weights: str, table=None) -> None:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    from ..logs import quiet_root_logger
    from ..quantize.calibration import ArrayReader
    from .htp_recipe import linear_weight_overrides

    with quiet_root_logger():  # the quantizer logs generic pre-processing advice at WARNING on every call
        config = get_qnn_qdq_config(
            str(graph),
            ArrayReader(names, calib, table=table),
            activation_type=QuantType.QUInt16,
            weight_type=QuantType.QUInt8,  # what no override names: the token table, LayerNorm scales
            init_overrides=linear_weight_overrides(graph, weights),
        )
        quantize(str(graph), str(dst), config)


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
    from ..runtime.token_table import HostTokenTable

    table = HostTokenTable.from_files(params)
    names = [i.name for i in session.get_inputs()]
    x = arrays["x"]
    return {
        "embeds": np.concatenate([session.run(None, text_feed(names, x[i : i + 1], table))[0] for i in range(len(x))])
    }


@register_backend(
    "qnn", ("qualcomm",), "offline HTP context binary via onnxruntime-qnn; accuracy on the x86 HTP simulator"
)
def compile_qnn(root: Path, manifest: dict, target: Target, stage: Path, options: dict, say) -> list[dict]:
    from ..quantize import TUNE_SPLIT
    from ..quantize.calibration import calibration_inputs, sample_inputs
    from ..quantize.fidelity import DEFAULT_GATE
    from ..runtime.encoders import onnx_embed, real_lengths

    _require_qnn()
    calib = calibration_inputs(
        root,
        manifest,
        num_calib=options.get("num_calib", NUM_CALIB),
        allow_small=options.get("allow_small_calibration", False),
    )
    # The tuning split and its fp32 ONNX embeddings, as `quantize` tunes against: the weight precision is chosen
    # here, before minutes on the simulator.
    tune = sample_inputs(root, manifest, TUNE_SPLIT)
    sources = static_sources(manifest)  # HTP graphs are static
    tune_reference = {
        f"{a['encoder']}_embeds": onnx_embed(verified_artifact(root, a), tune.for_encoder(a["encoder"]))
        for a, _, tokens in sources
        if not tokens
    }
    records = []
    for source, stem, tokens in sources:
        x, tune_x, reference = calib.for_encoder(source["encoder"]), tune.for_encoder(source["encoder"]), tune_reference
        if tokens:
            # A length bucket is calibrated and tuned on the captions cut to its length (what it is fed: ids padded
            # after EOT); it is tuned on those that fit it, as verify gates it.
            x = np.ascontiguousarray(x[:, :tokens])
            fits = real_lengths(tune_x) <= tokens
            tune_x, reference = tune_x[fits][:, :tokens], {k: v[fits] for k, v in tune_reference.items()}
        record = _compile_one(
            verified_artifact(root, source),
            source,
            stem,
            (x, tune_x, reference, tune_reference),
            options.get("gate") or DEFAULT_GATE,
            target,
            stage,
            options,
            say,
            source=source["path"],
            calibration=calib.source,
        )
        record["tuning"]["set"] = f"{tune.source}" + (f", {len(tune_x)} that fit {tokens} tokens" if tokens else "")
        if tokens:
            record["length_bucket"] = {"tokens": tokens, "covers": source["parity"]["covers"]}
        records.append(record)
    return records


def _compile_one(
    src: Path, fp32: dict, stem: str, data: tuple, gate, target: Target, stage: Path, options: dict, say, **provenance
) -> dict:
    import onnx

    from ..runtime.encoders import onnx_embed
    from ..runtime.token_table import HostTokenTable
    from .host_gather import PROVE_CUT_SAMPLES, input_records, moved_to_host
    from .htp_recipe import WEIGHT_STEPS, tuning_step, weights_description

    calib, tune_x, reference, population = data
    encoder = fp32["encoder"]
    context = stage / f"{stem}.qnn_ctx.onnx"
    steps = []
    text = encoder == "text"
    with htp_graph(src, stage, stage if text else None, tune_x[:PROVE_CUT_SAMPLES] if text else None) as (graph, host):
        if host is not None:
            say(moved_to_host(target.id, stem, host))
        table = HostTokenTable.in_folder(stage) if host else None
        inputs = input_records(onnx.load(str(graph), load_external_data=False))
        names = [i["name"] for i in inputs]
        for weights, precision in WEIGHT_STEPS:
            qdq = stage / f"{stem}.{precision}.qdq.onnx"
            say(f"{target.id}: quantizing {stem} for HTP ({precision}, weights {weights})")
            quantize_for_htp(graph, qdq, names, calib, weights, table)
            # The CPU execution provider on the QDQ model computes what the simulator does (htp_recipe.py).
            embeds = onnx_embed(qdq, tune_x, table=table)
            steps.append(tuning_step(encoder, weights, embeds, reference, gate, population))
            if steps[-1]["passed"] or (weights, precision) == WEIGHT_STEPS[-1]:
                break
            misses = "; ".join(steps[-1]["misses"])
            say(f"{target.id}: {stem} {precision} misses the gate on the tuning split ({misses})")
            qdq.unlink()
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
        "precision": precision,
        "target": target.id,
        "soc": target.soc,
        "inputs": inputs,
        "outputs": [{**fp32["outputs"][0], "shape": [1, *fp32["outputs"][0]["shape"][1:]]}],
        "files": {"context_model": context.name, "qdq_model": qdq.name, **(host["files"] if host else {})},
        **({"host_gather": {k: v for k, v in host.items() if k != "files"}} if host else {}),
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
            "weights": weights_description(weights),
            "preprocess": "qnn_preprocess_model(fuse_layernorm=True)",
            "provider_options": qnn_provider_options(target.soc),
        },
        # Each weight step tried on the tuning split (CPU execution provider on the QDQ model vs fp32 ONNX).
        "tuning": {"passed": steps[-1]["passed"], "steps": steps},
    }


def _require_qnn() -> None:
    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        raise CompileError(
            "qnn targets need onnxruntime-qnn (the QNN EP plugin with the HTP host libraries and "
            "simulator): pip install 'mcad-export[qnn]' (Linux x86-64 or Windows)"
        ) from None
