"""Dynamic INT8 Linear layers with one activation scale per token (the `dyntok` recipe).

Why: ONNX Runtime's dynamic quantization (DynamicQuantizeMatMul) gives a whole activation tensor one
uint8 scale, and on this CPU class (AVX2 without VNNI) its u8 x s8 kernel needs 7-bit weights
(reduce_range) or int16 pair sums saturate. On all-MiniLM-L6-v2 (tuning captions, fp32 ONNX as
reference) 7-bit weights alone cost cos 0.987, and the [CLS] row of every FFN input peaks at 20-30
while other tokens stay below 6, so one scale per tensor rounds the rest away: 0.957 in all.
Measured steps: one scale per token 0.972; + both operands uint8 (MLAS's u8 x u8 kernel widens to
16 bits before multiplying, so 8-bit weights do not saturate) 0.982; + SmoothQuant channel
smoothing first (quantize/smoothing.py, alpha 0.65) 0.9944. Built from standard ops:

    s   = max(|x|, axis=-1) / 127                       per token; shared by Q/K/V reading the same x
    q   = uint8(round(x / s) + 128)                     zero point 128 (ORT takes only scalar ones)
    y   = float(MatMulInteger(q, Wq, 128, 128)) * s * w_scale    Wq = uint8(round(W / w_scale) + 128)

Weights: symmetric int8 per output channel stored offset by 128 as uint8.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHT_LEVELS = 127
ACTIVATION_LEVELS = 127
ZERO_POINT = 128


def quantize_per_token(model: onnx.ModelProto, exclude: tuple[str, ...] = ()) -> int:
    """Rewrites every MatMul with a constant 2-D float weight (MatMul form: weight_prep.gemm_to_matmul first)
    and not in `exclude` into per-token dynamic INT8, in place; returns how many. Node names are kept on the
    MatMulInteger so damage reports and `linear_coverage` still find them."""
    inits = {init.name: init for init in model.graph.initializer}
    targets = [
        n
        for n in model.graph.node
        if n.op_type == "MatMul"
        and len(n.input) > 1
        and n.name not in exclude
        and n.input[0] not in inits
        and (w := inits.get(n.input[1])) is not None
        and w.data_type == TensorProto.FLOAT
        and len(w.dims) == 2
    ]
    if not targets:
        return 0
    shared = _constants(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    quantized_inputs: dict[str, tuple[str, str]] = {}
    out: list[onnx.NodeProto] = []
    target_ids, done = {id(n) for n in targets}, set()
    for node in model.graph.node:
        if id(node) not in target_ids:
            out.append(node)
            continue
        x = node.input[0]
        if x not in quantized_inputs:
            quantized_inputs[x] = _quantize_rows(x, node.name, shared, out, opset)
        q, row_scale = quantized_inputs[x]
        w_q, w_scale = _weights(numpy_helper.to_array(inits[node.input[1]]))
        base = node.input[1]
        if base not in done:  # a weight two MatMuls share is quantized once
            done.add(base)
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(w_q, f"{base}__u8_pc"),
                    numpy_helper.from_array(w_scale.astype(np.float32), f"{base}__col_scale"),
                ]
            )
        y = node.output[0]
        out.extend(
            [
                helper.make_node(
                    "MatMulInteger",
                    [q, f"{base}__u8_pc", shared["zero_point"], shared["zero_point"]],
                    [f"{y}__i32"],
                    name=node.name,
                ),
                helper.make_node("Cast", [f"{y}__i32"], [f"{y}__f"], name=f"{node.name}__cast", to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{y}__f", row_scale], [f"{y}__row"], name=f"{node.name}__row_scale"),
                helper.make_node("Mul", [f"{y}__row", f"{base}__col_scale"], [y], name=f"{node.name}__col_scale"),
            ]
        )
    del model.graph.node[:]
    model.graph.node.extend(out)
    from .weight_prep import drop_unused_initializers

    drop_unused_initializers(model)
    return len(targets)


def _weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column, stored offset by ZERO_POINT as uint8; returns (codes, scales)."""
    weight = weight.astype(np.float64)
    scale = np.abs(weight).max(axis=0) / WEIGHT_LEVELS
    scale = np.where(scale > 0, scale, 1.0)
    codes = (np.clip(np.rint(weight / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS) + ZERO_POINT).astype(np.uint8)
    return codes, scale


def _rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-8) / ACTIVATION_LEVELS
    return np.rint(x / scale), scale


def per_token_damage(model: onnx.ModelProto, reader, exclude: tuple[str, ...] = ()) -> list[dict]:
    """Linear layers ranked by the SQNR of their output under this recipe (worst first), the format of
    layer_damage.node_damage: what auto mixed precision keeps in float first. Each layer is simulated alone
    in numpy on the float model's own inputs to it (the u8 x u8 kernel is exact, so the simulation is too)."""
    from .layer_damage import sqnr_db
    from .smoothing import linear_inputs, probed_activations

    inits = {init.name: init for init in model.graph.initializer}
    readers = {x: [n for n in nodes if n.name not in exclude] for x, nodes in linear_inputs(model).items()}
    # Each weight as float64 and as its restored int8 codes, once (the samples below reuse them).
    weights = {}
    for node in (n for nodes in readers.values() for n in nodes):
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        codes, col_scale = _weights(weight)
        weights[node.name] = (weight, (codes.astype(np.float64) - ZERO_POINT) * col_scale)
    exact: dict[str, list] = {}
    restored: dict[str, list] = {}
    for values in probed_activations(model, reader, [x for x, nodes in readers.items() if nodes]):
        for x, value in values.items():
            flat = value.reshape(-1, value.shape[-1]).astype(np.float64)
            q, row_scale = _rows(flat)
            for node in readers[x]:
                weight, dequantized = weights[node.name]
                exact.setdefault(node.name, []).append(flat @ weight)
                restored.setdefault(node.name, []).append((q @ dequantized) * row_scale)
    ranked = [
        {
            "node": name,
            "op_type": "MatMul",
            "sqnr_db": round(sqnr_db(np.concatenate(exact[name]), np.concatenate(restored[name])), 2),
            "worst_tensor": name,
        }
        for name in exact
    ]
    ranked.sort(key=lambda r: r["sqnr_db"])
    return ranked


def _constants(model: onnx.ModelProto) -> dict[str, str]:
    values = {
        "zero_point": np.array(ZERO_POINT, np.uint8),
        "levels": np.array(ACTIVATION_LEVELS, np.float32),
        "offset": np.array(ZERO_POINT, np.float32),
        "tiny": np.array(1e-8, np.float32),
        "last_axis": np.array([-1], np.int64),
    }
    names = {}
    for key, value in values.items():
        names[key] = f"per_token__{key}"
        model.graph.initializer.append(numpy_helper.from_array(value, names[key]))
    return names


def _quantize_rows(x: str, label: str, c: dict[str, str], out: list, opset: int) -> tuple[str, str]:
    """Appends the nodes that quantize `x` row by row; returns (uint8 tensor, float row scale [..., 1])."""
    p = f"{x}__pt"
    # ReduceMax takes its axes as an input from opset 18, as an attribute before.
    reduce = (
        helper.make_node("ReduceMax", [f"{p}_abs", c["last_axis"]], [f"{p}_max"], name=f"{label}__pt_max", keepdims=1)
        if opset >= 18
        else helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], name=f"{label}__pt_max", keepdims=1, axes=[-1])
    )
    out.extend(
        [
            helper.make_node("Abs", [x], [f"{p}_abs"], name=f"{label}__pt_abs"),
            reduce,
            helper.make_node("Max", [f"{p}_max", c["tiny"]], [f"{p}_max_safe"], name=f"{label}__pt_safe"),
            helper.make_node("Div", [f"{p}_max_safe", c["levels"]], [f"{p}_scale"], name=f"{label}__pt_scale"),
            helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_scaled"], name=f"{label}__pt_div"),
            helper.make_node("Round", [f"{p}_scaled"], [f"{p}_round"], name=f"{label}__pt_round"),
            helper.make_node("Add", [f"{p}_round", c["offset"]], [f"{p}_shift"], name=f"{label}__pt_shift"),
            helper.make_node("Cast", [f"{p}_shift"], [f"{p}_u8"], name=f"{label}__pt_u8", to=TensorProto.UINT8),
        ]
    )
    return f"{p}_u8", f"{p}_scale"
