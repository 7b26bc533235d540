"""Per-layer error localisation for QDQ models (in the spirit of onnxruntime's qdq_loss_debug).

Every quantized tensor gets an SQNR in dB between its float value and its quantize-dequantize
round trip: activations through onnxruntime's qdq_loss_debug, weights by dequantizing the stored
integers directly (per-tensor or per-channel). A node's damage is the worst SQNR among its
quantized inputs; lower is worse. The ranking drives auto mixed precision and the report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..logs import quiet_root_logger
from .calibration import ArrayReader


def sqnr_db(signal: np.ndarray, noisy: np.ndarray) -> float:
    noise = np.sum((signal.astype(np.float64) - noisy) ** 2)
    power = np.sum(signal.astype(np.float64) ** 2)
    if power == 0:
        return float("inf") if noise == 0 else float("-inf")
    return float("inf") if noise == 0 else float(10 * np.log10(power / noise))


def weight_sqnr(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto) -> dict[str, float]:
    floats = {i.name: i for i in float_model.graph.initializer}
    inits = {i.name: i for i in qdq_model.graph.initializer}
    out = {}
    for node in qdq_model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        original = node.input[0].removesuffix("_quantized")
        if original not in floats:
            continue
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and scale.size > 1:  # per-channel: broadcast along `axis`
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        out[original] = sqnr_db(numpy_helper.to_array(floats[original]), (q - zero) * scale)
    return out


def module_of(node, parameters: set[str]) -> str | None:
    """The PyTorch module a node's parameters came from (`vision_model.encoder.layers.3.mlp.fc2`), read off its
    named weight or bias: exporters leave fused nodes generic names (`Gemm_51`) that say nothing to a reader."""
    for name in node.input:
        stem, _, leaf = name.rpartition(".")
        if name in parameters and stem and leaf in ("weight", "bias"):
            return stem.removeprefix("model.")
    return None


def node_damage(
    float_named: Path,
    qdq_path: Path,
    input_names: list[str],
    samples: np.ndarray,
    op_types: tuple[str, ...],
    cut: bool = False,
) -> list[dict]:
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory() as tmp, quiet_root_logger():
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_named), str(aug_float))
        modify_model_output_intermediate_tensors(str(qdq_path), str(aug_qdq))
        float_acts = collect_activations(str(aug_float), ArrayReader(input_names, samples, cut=cut))
        qdq_acts = collect_activations(str(aug_qdq), ArrayReader(input_names, samples, cut=cut))
    sqnr = {
        name: float(err["qdq_err"])
        for name, err in compute_activation_error(create_activation_matching(qdq_acts, float_acts)).items()
    }
    float_model = onnx.load(str(float_named))
    sqnr.update(weight_sqnr(float_model, onnx.load(str(qdq_path))))

    ranked = []
    parameters = {i.name for i in float_model.graph.initializer}
    for node in float_model.graph.node:
        if node.op_type not in op_types:
            continue
        hits = [(sqnr[t], t) for t in node.input if t in sqnr and not np.isnan(sqnr[t])]
        if hits:
            worst, tensor = min(hits)
            entry = {"node": node.name, "op_type": node.op_type, "sqnr_db": round(worst, 2), "worst_tensor": tensor}
            module = module_of(node, parameters)
            if module:
                entry["module"] = module
            ranked.append(entry)
    ranked.sort(key=lambda r: r["sqnr_db"])
    return ranked
