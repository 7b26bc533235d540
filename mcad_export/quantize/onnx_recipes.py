"""ONNX Runtime quantization recipes, with the known traps handled by construction.

- The causal mask is never quantized: nodes that consume a large negative constant (the additive
  mask) are always excluded, whatever op types a recipe quantizes. A quantized mask collapses
  text encoders (cos 0.25 measured here).
- Conv is never dynamically quantized (ConvInteger is 3-6x slower on this CPU class).
- reduce_range (7-bit weights) for the CPU int8 recipes: AVX2 without VNNI saturates int8 products
  (ViT image cos 0.988 -> 0.9996 measured here).
- Only MatMuls with a constant B are quantized on the CPU recipes: attention's activation x
  activation matmuls keep float precision, where int8 hurts most and saves no weight bytes.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

# Constants at or below this are additive masks (our -1e4, HF's finfo.min, legacy -inf).
MASK_THRESHOLD = -1e3

RECIPES = {
    "w8a8": {"kind": "static", "activations": "uint8", "weights": "int8", "per_channel": True, "reduce_range": True,
             "op_types": ["MatMul", "Gemm", "Conv", "Gather"]},
    "w8a16": {"kind": "static", "activations": "uint16", "weights": "uint8", "per_channel": True,
              "reduce_range": False, "op_types": ["MatMul", "Gemm", "Conv", "Gather"]},
    "dynamic": {"kind": "dynamic", "activations": "float32 (dynamic uint8 per call)", "weights": "int8",
                "per_channel": False, "reduce_range": True, "op_types": ["MatMul", "Gather"]},
    "fp16": {"kind": "fp16", "activations": "float16", "weights": "float16", "io": "float32"},
}
PRECISIONS = tuple(RECIPES)


def name_all_nodes(src: Path, dst: Path) -> onnx.ModelProto:
    """Quantizer exclusions and damage reports are by node name; simplified graphs may leave some unnamed.
    Every later step (quantize, damage, exclusions) works on this named copy so the names agree."""
    model = onnx.load(str(src))
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    onnx.save(model, str(dst))
    return model


def mask_consumers(model: onnx.ModelProto) -> list[str]:
    masks = {init.name for init in model.graph.initializer
             if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
             and numpy_helper.to_array(init).size > 1 and numpy_helper.to_array(init).min() <= MASK_THRESHOLD}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t) if node.attribute and node.attribute[0].t else None
            if value is not None and value.dtype.kind == "f" and value.size > 1 and value.min() <= MASK_THRESHOLD:
                masks.update(node.output)
    return [n.name for n in model.graph.node if masks.intersection(n.input)]


def fp16_optimization_level(path: Path) -> str:
    """Workaround: onnxruntime 1.32's EXTENDED-level fusions fail to initialise some fp16 conv graphs
    (MobileCLIP2-S0 image tower: "Tensor type mismatch ... MLFloat16" in Tensor::MutableData); BASIC
    works. The level is recorded per artifact and every runner honours it."""
    from ..runtime.encoders import onnx_session

    try:
        onnx_session(path, optimization="all", log_level=4)  # the expected failure needs no log line
        return "all"
    except Exception:  # noqa: BLE001 - ORT raises its own Fail type from pybind
        onnx_session(path, optimization="basic")  # if this also fails, the error propagates as-is
        return "basic"


def quantize_onnx(named: Path, dst: Path, precision: str, reader=None, exclude: tuple[str, ...] = ()) -> dict:
    """Quantizes a `name_all_nodes` copy into `dst`; returns the recipe record for the manifest."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    recipe = dict(RECIPES[precision])
    model = onnx.load(str(named))
    protected = mask_consumers(model)
    excluded = sorted(set(protected) | set(exclude))
    if recipe["kind"] == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(model, keep_io_types=True, node_block_list=excluded), str(dst))
        recipe["ort_graph_optimization"] = fp16_optimization_level(dst)
    elif recipe["kind"] == "dynamic":
        quantize_dynamic(named, dst, op_types_to_quantize=recipe["op_types"], per_channel=False,
                         reduce_range=True, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                         extra_options={"MatMulConstBOnly": True})
    else:
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16}
        quantize_static(named, dst, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=recipe["op_types"],
                        per_channel=recipe["per_channel"], reduce_range=recipe["reduce_range"],
                        activation_type=types[recipe["activations"]], weight_type=types[recipe["weights"]],
                        nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"MatMulConstBOnly": True,
                                       # 16-bit Q/DQ needs ORT's com.microsoft ops below opset 21
                                       "UseQDQContribOps": recipe["activations"] == "uint16"})
    recipe.update(precision=precision, mask_nodes_protected=len(protected),
                  kept_float=sorted(set(exclude) - set(protected)),
                  calibration="MinMax" if recipe["kind"] == "static" else None)
    return recipe
