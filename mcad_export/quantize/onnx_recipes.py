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

import tempfile
from pathlib import Path

import onnx
from onnx import numpy_helper

# Constants at or below this are additive masks (our -1e4, HF's finfo.min, legacy -inf).
MASK_THRESHOLD = -1e3

RECIPES = {
    "w8a8": {
        "integer_kernels": True,
        "kind": "static",
        "activations": "uint8",
        "weights": "int8",
        "per_channel": True,
        "reduce_range": True,
        "op_types": ["MatMul", "Gemm", "Conv", "Gather"],
    },
    "w8a16": {
        "kind": "static",
        "activations": "uint16",
        "weights": "uint8",
        "per_channel": True,
        "reduce_range": False,
        "op_types": ["MatMul", "Gemm", "Conv", "Gather"],
    },
    # Every Linear (Gemm rewritten to MatMul, weight_prep) as MatMulInteger with per-output-channel int8 weights;
    # activations quantized to uint8 per call; the token table int8 per row.
    "dynamic": {
        "integer_kernels": True,
        "kind": "dynamic",
        "activations": "float32 (dynamic uint8 per call)",
        "weights": "int8",
        "per_channel": True,
        "reduce_range": True,
        "op_types": ["MatMul"],
        "token_table": "int8",
    },
    # Weight-only: MatMulNBits with symmetric blockwise int8 / int4 weights and float activations at the graph
    # level. accuracy_level 4 lets MLAS quantize each activation block to int8 inside the kernel: the fastest
    # streaming kernel measured on this CPU (benchmarks/README.md, "text_kernels.py"). Text towers only: an
    # image tower is compute-bound (many patches), where weight-only storage buys nothing.
    "w8": {
        "integer_kernels": True,
        "kind": "weight_only",
        "bits": 8,
        "block_size": 128,
        "accuracy_level": 4,
        "weights": "int8 blockwise",
        "activations": "float32",
        "op_types": ["MatMul"],
        "token_table": "int8",
        "encoders": ["text"],
    },
    # Opt-in (--precision w4): on the embedded student (width 96) int4 costs ~1 R@1 point held-out even with
    # the most damaged layer kept int8, so a default run would fail its own gate.
    "w4": {
        "integer_kernels": True,
        "kind": "weight_only",
        "bits": 4,
        "block_size": 32,
        "accuracy_level": 4,
        "weights": "int4 blockwise",
        "activations": "float32",
        "op_types": ["MatMul"],
        "token_table": "int8",
        "encoders": ["text"],
        "opt_in": True,
    },
    # Opt-in (--precision dyntok): INT8 activations with one scale per token, after SmoothQuant channel smoothing,
    # both matmul operands uint8 (quantize/per_token.py says why each step); text towers. The dynamic recipe for
    # trained BERT-family towers, whose outliers sit on the [CLS] token where one scale per tensor fails.
    "dyntok": {
        "integer_kernels": True,
        "kind": "per_token",
        "activations": "uint8 per token (dynamic)",
        "weights": "int8 per channel",
        "per_channel": True,
        "smooth_alpha": 0.65,
        "op_types": ["MatMul"],
        "token_table": "int8",
        "encoders": ["text"],
        "opt_in": True,
    },
    "fp16": {"kind": "fp16", "activations": "float16", "weights": "float16", "io": "float32"},
}
PRECISIONS = tuple(RECIPES)
# Whose matmuls run on integer kernels (MatMulInteger, MatMulNBits at accuracy level 4, QDQ int8): the roofline
# judges them against the int8 GEMM peak.
INTEGER_PRECISIONS = tuple(p for p in PRECISIONS if RECIPES[p].get("integer_kernels"))
DEFAULT_PRECISIONS = tuple(p for p in PRECISIONS if not RECIPES[p].get("opt_in"))


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
    masks = {
        init.name
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        and numpy_helper.to_array(init).size > 1
        and numpy_helper.to_array(init).min() <= MASK_THRESHOLD
    }
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


def applies_to(precision: str, encoder: str) -> bool:
    return encoder in RECIPES[precision].get("encoders", ("image", "text"))


def _integer_linears(
    model: onnx.ModelProto,
    dst: Path,
    recipe: dict,
    excluded: list[str],
    keep_higher: tuple[str, ...],
    reader=None,
    activation_peaks=None,
) -> dict:
    """dynamic / weight_only: Gemm rewritten to MatMul so the quantizer reaches every Linear, the token table
    int8, then ONNX Runtime's quantizer; weights >= 4 KiB saved as page-aligned external data (dst + '.data'), which
    ONNX Runtime memory-maps, so untouched token-table rows never become resident."""
    from ..logs import quiet_root_logger, root_logger_preserved
    from .weight_prep import gemm_to_matmul, int8_token_table, linear_coverage, save_with_aligned_external_data

    rewritten = gemm_to_matmul(model)
    smoothing = None
    if recipe["kind"] == "per_token":  # smoothed on the float graph, before the token table becomes int8
        from .per_token import quantize_per_token
        from .smoothing import smooth_linears

        smoothing = smooth_linears(model, reader, recipe["smooth_alpha"], tuple(excluded), peaks=activation_peaks)
    table = int8_token_table(model) if recipe.get("token_table") == "int8" else None
    with quiet_root_logger():
        if recipe["kind"] == "per_token":
            quantize_per_token(model, tuple(excluded))
            quantized = model
        elif recipe["kind"] == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
                inline = Path(tmp) / "inline.onnx"
                quantize_dynamic(
                    model,
                    inline,
                    op_types_to_quantize=recipe["op_types"],
                    per_channel=recipe["per_channel"],
                    reduce_range=recipe["reduce_range"],
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    extra_options={"MatMulConstBOnly": True},
                )
                quantized = onnx.load(str(inline))
        else:
            with root_logger_preserved():
                from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            kept = [name for name in keep_higher if recipe["bits"] < 8]
            if kept:  # auto mixed precision for int4: the most damaged layers go to int8 blocks, not to float
                # nodes_to_include only adds to op_types_to_quantize in ORT 1.32: exclude every other MatMul instead.
                others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in kept]
                quantizer = MatMulNBitsQuantizer(
                    model,
                    bits=8,
                    block_size=recipe["block_size"],
                    is_symmetric=True,
                    accuracy_level=recipe["accuracy_level"],
                    nodes_to_exclude=others,
                    op_types_to_quantize=("MatMul",),
                )
                quantizer.process()
                model = quantizer.model.model
            quantizer = MatMulNBitsQuantizer(
                model,
                bits=recipe["bits"],
                block_size=recipe["block_size"],
                is_symmetric=True,
                accuracy_level=recipe["accuracy_level"],
                nodes_to_exclude=[n for n in excluded if n not in kept],
                op_types_to_quantize=("MatMul",),
            )
            quantizer.process()
            quantized = quantizer.model.model
    save_with_aligned_external_data(quantized, dst, external_data_name(dst))
    ranked_by = "simulated output damage" if recipe["kind"] == "per_token" else "weight damage"
    why = {name: f"kept in float by auto mixed precision ({ranked_by})" for name in excluded}
    return {
        "gemm_rewritten_to_matmul": rewritten,
        "token_table": table,
        **({"smoothing": smoothing} if smoothing else {}),
        "linear_layers": linear_coverage(quantized, why),
    }


def external_data_name(dst: Path) -> str:
    return f"{Path(dst).name}.data"


def quantize_onnx(
    named: Path, dst: Path, precision: str, reader=None, exclude: tuple[str, ...] = (), activation_peaks=None
) -> dict:
    """Quantizes a `name_all_nodes` copy into `dst`; returns the recipe record for the manifest."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    recipe = dict(RECIPES[precision])
    model = onnx.load(str(named))
    protected = mask_consumers(model)
    excluded = sorted(set(protected) | set(exclude))
    if recipe["kind"] == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(model, keep_io_types=True, node_block_list=excluded), str(dst))
        recipe["ort_graph_optimization"] = fp16_optimization_level(dst)
    elif recipe["kind"] in ("dynamic", "weight_only", "per_token"):
        recipe.update(_integer_linears(model, dst, recipe, excluded, tuple(exclude), reader, activation_peaks))
    else:
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16}
        quantize_static(
            named,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=recipe["op_types"],
            per_channel=recipe["per_channel"],
            reduce_range=recipe["reduce_range"],
            activation_type=types[recipe["activations"]],
            weight_type=types[recipe["weights"]],
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "MatMulConstBOnly": True,
                # 16-bit Q/DQ needs ORT's com.microsoft ops below opset 21
                "UseQDQContribOps": recipe["activations"] == "uint16",
            },
        )
    recipe.update(
        precision=precision,
        mask_nodes_protected=len(protected),
        **(
            {"kept_float": [], "kept_int8": sorted(exclude)}
            if recipe.get("bits", 8) < 8
            else {"kept_float": sorted(set(exclude) - set(protected))}
        ),
        calibration="MinMax" if recipe["kind"] == "static" else None,
    )
    return recipe
