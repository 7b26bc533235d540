"""SmoothQuant-style activation smoothing for the INT8-activation recipes (dynamic, w8a8).

Why: trained transformer text towers (BERT/MiniLM measured here) carry a few activation channels
tens of times larger than the rest at the inputs of their Linear layers. One uint8 scale per tensor
(ONNX Runtime's DynamicQuantizeLinear, and QDQ per-tensor activations) spends its range on those
channels and rounds the others away: all-MiniLM-L6-v2's dynamic INT8 text tower scored cos 0.951
on held-out captions. SmoothQuant (Xiao et al., 2023) divides each input channel k by
s_k = max|X_k|^alpha / max|W_k|^(1 - alpha) and multiplies row k of the weight by s_k: the same
product in exact arithmetic, with the outliers moved into weights that are quantized per output
channel.

The division is an explicit Mul before the Linear (one per distinct input tensor, shared by the
Q/K/V projections that read it). Post-LN BERT cannot fold it into LayerNorm's gamma as pre-LN
models can: the same LayerNorm output also feeds the residual branch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_ALPHA = 0.5
# Scales are clipped so a dead channel (max 0) neither divides by zero nor blows its weight row up.
MIN_SCALE, MAX_SCALE = 1e-2, 1e2


def linear_inputs(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor -> the MatMuls with a constant 2-D float weight that read it."""
    inits = {init.name: init for init in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 2:
            continue
        if node.input[0] in inits:
            continue
        readers.setdefault(node.input[0], []).append(node)
    return readers


def probed_activations(model: onnx.ModelProto, reader, tensors: list[str]):
    """Yields {tensor: value} for each calibration sample `reader` yields, from the float model."""
    from ..runtime.encoders import onnx_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in tensors if name not in known
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(path), save_as_external_data=probe.ByteSize() > 1_500_000_000)
        session = onnx_session(path, optimization="basic")
        reader.rewind()
        while (feed := reader.get_next()) is not None:
            yield dict(zip(tensors, session.run(list(tensors), feed)))
        reader.rewind()


def activation_channel_max(model: onnx.ModelProto, reader, tensors: list[str]) -> dict[str, np.ndarray]:
    """Max |x| per last-axis channel of each tensor over every calibration sample `reader` yields."""
    peaks: dict[str, np.ndarray] = {}
    for values in probed_activations(model, reader, tensors):
        for name, value in values.items():
            channel = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            peaks[name] = np.maximum(peaks[name], channel) if name in peaks else channel
    return peaks


def linear_peaks(model: onnx.ModelProto, reader) -> dict[str, np.ndarray]:
    """Max |x| per channel of every Linear input of the float model (what smoothing scales from)."""
    return activation_channel_max(model, reader, list(linear_inputs(model)))


def smooth_linears(
    model: onnx.ModelProto, reader, alpha: float = DEFAULT_ALPHA, skip: tuple[str, ...] = (), peaks=None
) -> dict:
    """Smooths every Linear's input in place (MatMul form: run weight_prep.gemm_to_matmul first); returns a
    record. `skip`: node names left as they are (mask consumers, layers kept in float). `peaks`: the float
    model's `linear_peaks`, when the caller smooths the same model more than once (auto mixed precision);
    else they are probed from `reader`."""
    readers = {tensor: [n for n in nodes if n.name not in skip] for tensor, nodes in linear_inputs(model).items()}
    readers = {tensor: nodes for tensor, nodes in readers.items() if nodes}
    if peaks is None:
        peaks = activation_channel_max(model, reader, list(readers))
    inits = {init.name: init for init in model.graph.initializer}
    smoothed, largest, ratios = 0, 1.0, []
    for tensor, nodes in readers.items():
        if tensor not in peaks:
            continue
        x_max = peaks[tensor].astype(np.float64)
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float64) for n in nodes]
        if any(w.shape[0] != x_max.shape[0] for w in weights):
            continue  # the weight does not read the last axis channel by channel (never in our exports)
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.clip(
            np.power(np.maximum(x_max, 1e-8), alpha) / np.power(np.maximum(w_max, 1e-8), 1 - alpha),
            MIN_SCALE,
            MAX_SCALE,
        )
        ratios.append(float(x_max.max() / max(np.median(x_max), 1e-12)))
        largest = max(largest, float(scale.max() / scale.min()))
        divisor = f"{tensor}__smooth_inv"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), divisor))
        smoothed_input = f"{tensor}__smoothed"
        index = min(list(model.graph.node).index(n) for n in nodes)
        model.graph.node.insert(
            index, helper.make_node("Mul", [tensor, divisor], [smoothed_input], name=f"{nodes[0].name}__smooth")
        )
        for node, w in zip(nodes, weights):
            scaled_name = f"{node.input[1]}__smoothed"
            model.graph.initializer.append(
                numpy_helper.from_array((w * scale[:, None]).astype(np.float32), scaled_name)
            )
            node.input[0], node.input[1] = smoothed_input, scaled_name
            smoothed += 1
    from .weight_prep import drop_unused_initializers

    drop_unused_initializers(model)
    return {
        "method": "SmoothQuant (explicit per-channel Mul before each Linear)",
        "alpha": alpha,
        "linear_layers": smoothed,
        "input_tensors": len(ratios),
        "worst_outlier_ratio": round(max(ratios), 1) if ratios else None,
        "max_scale_spread": round(largest, 1),
    }
