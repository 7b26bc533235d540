"""Graph rewrites that let the integer recipes reach every Linear layer and the token table.

- Gemm -> MatMul (+ Add): our exports turn each Linear into Gemm(transB=1), and ONNX Runtime 1.32's
  dynamic quantizer and MatMulNBits quantizer handle MatMul only, so without this most of a text
  tower's weights stay float (72 Gemm vs 25 MatMul in a ViT-B-32 text graph). Same arithmetic in fp32:
  the bias is added after the product instead of seeding the accumulator (<= 1 ulp per output).
- int8 token table: the [vocab, width] embedding stored int8 with one scale per row, gathered and then
  scaled. ORT's own Gather quantization uses one scale for the whole table (dynamic) or 4-bit blocks in a
  contrib op (MatMulNBits quantizer); per-row int8 keeps rare tokens' rows exact to 1/254 of their own
  range and uses only standard ops. Saved as aligned external data, the table is memory-mapped, so a
  query makes resident only the rows (pages) it touches.
- `linear_coverage`: which Linear layers a quantized graph still computes in float, each with a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# A Gather over a float table this tall is the token embedding (position tables have context-length rows).
MIN_VOCAB_ROWS = 1000
# Linear layers: MatMul/Gemm whose weight operand is a 2-D float constant (attention's activation x activation
# matmuls are not weights and stay float by design, see onnx_recipes).
LINEAR_OPS = ("MatMul", "Gemm")
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _attr(node, name, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrites Gemm(A, W, b) with a constant W into MatMul(A, W') + Add(b), in place; returns how many.

    The MatMul keeps the Gemm's node name, so exclusions and damage reports by name still apply."""
    inits = _initializers(model)
    nodes, rewritten, created = [], 0, set()
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) > 1 else None
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        beta = _attr(node, "beta", 1.0)
        if (
            weight is None
            or _attr(node, "transA", 0)
            or weight.data_type not in FLOAT_TYPES
            or (bias and beta != 1.0 and bias not in inits)
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        w = (w.T if _attr(node, "transB", 0) else w) * np.asarray(_attr(node, "alpha", 1.0), w.dtype)
        w_name = f"{weight.name}__kn{_attr(node, 'transB', 0)}a{_attr(node, 'alpha', 1.0)}"
        if w_name not in created:  # a weight shared by several Gemms is transposed once
            created.add(w_name)
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), w_name))
        product = f"{node.output[0]}__mm" if bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], name=node.name))
        if bias:
            if beta != 1.0:
                scaled_name = f"{bias}__beta{beta}"
                if scaled_name not in created:
                    created.add(scaled_name)
                    scaled = numpy_helper.to_array(inits[bias]) * np.asarray(beta, np.float32)
                    model.graph.initializer.append(numpy_helper.from_array(scaled.astype(np.float32), scaled_name))
                bias = scaled_name
            nodes.append(helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}__bias"))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    drop_unused_initializers(model)
    return rewritten


def token_gather(model: onnx.ModelProto) -> tuple[int, onnx.NodeProto, onnx.TensorProto] | None:
    """(node index, Gather node, table initializer) of the token embedding lookup, or None."""
    inits = _initializers(model)
    for index, node in enumerate(model.graph.node):
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if (
            table is not None
            and table.data_type == TensorProto.FLOAT
            and len(table.dims) == 2
            and table.dims[0] >= MIN_VOCAB_ROWS
            and _attr(node, "axis", 0) == 0
        ):
            return index, node, table
    return None


def int8_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [rows, width] float table as int8 with one float32 scale per row (each row exact to 1/254 of its range)."""
    scales = np.abs(values).max(axis=1) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    return np.clip(np.rint(values / scales[:, None]), -127, 127).astype(np.int8), scales


def int8_token_table(model: onnx.ModelProto) -> dict | None:
    """Stores the token embedding table int8 with a float scale per row, in place; returns its record or None.

    Gather(table, ids) becomes Gather(table_q, ids) -> Cast -> Mul(Gather(scales, ids)[..., None])."""
    found = token_gather(model)
    if found is None:
        return None
    index, node, table = found
    values = numpy_helper.to_array(table)
    q, scales = int8_rows(values)
    base, out = table.name, node.output[0]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(q, f"{base}__int8"),
            numpy_helper.from_array(scales[:, None], f"{base}__row_scale"),
        ]
    )
    ids = node.input[1]
    replacement = [
        helper.make_node("Gather", [f"{base}__int8", ids], [f"{out}__q"], name=node.name, axis=0),
        helper.make_node("Cast", [f"{out}__q"], [f"{out}__f"], name=f"{node.name}__cast", to=TensorProto.FLOAT),
        helper.make_node("Gather", [f"{base}__row_scale", ids], [f"{out}__s"], name=f"{node.name}__scale", axis=0),
        helper.make_node("Mul", [f"{out}__f", f"{out}__s"], [out], name=f"{node.name}__dequant"),
    ]
    model.graph.node.remove(node)
    for offset, new in enumerate(replacement):
        model.graph.node.insert(index + offset, new)
    drop_unused_initializers(model)
    error = np.abs(q.astype(np.float32) * scales[:, None] - values).max()
    return {
        "node": node.name,
        "rows": int(values.shape[0]),
        "width": int(values.shape[1]),
        "storage": "int8, one float scale per row",
        "bytes": int(q.nbytes + scales.nbytes),
        "fp32_bytes": int(values.nbytes),
        "max_abs_error": float(error),
    }


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def linear_coverage(model: onnx.ModelProto, reasons: dict[str, str]) -> dict:
    """Linear layers left in float in a quantized graph, each with `reasons[node name]` or 'not quantized by the
    recipe' (what a test treats as a defect). Integer/blockwise nodes are counted as quantized."""
    inits = _initializers(model)
    float_left, quantized = [], 0
    for node in model.graph.node:
        if node.op_type in (
            "MatMulInteger",
            "DynamicQuantizeMatMul",
            "MatMulNBits",
            "QLinearMatMul",
            "MatMulIntegerToFloat",
        ):
            quantized += 1
            continue
        if node.op_type not in LINEAR_OPS or len(node.input) < 2:
            continue
        weight = inits.get(node.input[1])
        if weight is None or weight.data_type not in FLOAT_TYPES or len(weight.dims) != 2:
            continue  # activation x activation, or a weight fed through DequantizeLinear (QDQ: quantized)
        name = node.name.removesuffix("_quant")
        float_left.append(
            {
                "node": node.name,
                "shape": list(weight.dims),
                "why": reasons.get(name) or reasons.get(node.name) or "not quantized by the recipe",
            }
        )
    return {"quantized": quantized, "float": float_left}


def save_with_aligned_external_data(model: onnx.ModelProto, path, data_name: str, threshold: int = 4096) -> None:
    """Writes `path` with every initializer >= `threshold` bytes in `data_name` beside it, each at a page-aligned
    offset: ONNX Runtime memory-maps external data only at offsets the allocation granularity divides (4 KiB on
    Linux and Android; onnxruntime/core/graph/model_saving_options.h), and a copied table is resident in full.
    Smaller tensors stay inline, where padding each to a page would cost more than it saves."""
    path = Path(path)
    alignment = 4096
    offset = 0
    with open(path.parent / data_name, "wb") as data:
        for init in model.graph.initializer:
            raw = (
                init.raw_data
                if init.HasField("raw_data")
                else numpy_helper.from_array(numpy_helper.to_array(init), init.name).raw_data
            )
            if len(raw) < threshold:
                continue
            pad = (-offset) % alignment
            data.write(b"\0" * pad)
            offset += pad
            data.write(raw)
            for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                init.ClearField(field)
            init.ClearField("raw_data")
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = init.external_data.add()
                entry.key, entry.value = key, value
            offset += len(raw)
    onnx.save_model(model, str(path))


def weight_damage(model: onnx.ModelProto, bits: int, block_size: int | None) -> list[dict]:
    """Linear layers ranked by the SQNR of their weights' quantization round trip (worst first), in the format of
    layer_damage.node_damage: what auto mixed precision keeps in higher precision first for the integer recipes,
    whose runtime kernels expose no intermediate quantized tensors. `block_size` None: one scale per output
    column (dynamic, 7-bit range: reduce_range); else symmetric blocks of `block_size` along K (MatMulNBits)."""
    from .layer_damage import sqnr_db

    inits = _initializers(model)
    ranked = []
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 2:
            continue
        w = numpy_helper.to_array(weight).astype(np.float64)  # [K, N]
        if block_size is None:
            scale = np.abs(w).max(axis=0, keepdims=True) / 63.0
            restored = np.rint(w / np.where(scale > 0, scale, 1)) * scale
        else:
            k, n = w.shape
            padded = np.zeros((-(-k // block_size) * block_size, n))
            padded[:k] = w
            blocks = padded.reshape(-1, block_size, n)
            levels = 2 ** (bits - 1) - 1
            scale = np.abs(blocks).max(axis=1, keepdims=True) / levels
            q = np.clip(np.rint(blocks / np.where(scale > 0, scale, 1)), -levels - 1, levels)
            restored = (q * scale).reshape(padded.shape)[:k]
        ranked.append(
            {
                "node": node.name,
                "op_type": "MatMul",
                "sqnr_db": round(sqnr_db(w, restored), 2),
                "worst_tensor": weight.name,
            }
        )
    ranked.sort(key=lambda r: r["sqnr_db"])
    return ranked
