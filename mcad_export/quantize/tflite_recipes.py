"""INT8 TFLite variants via ai-edge-quantizer (always run isolated: see mcad_export/isolated.py).

Like the ONNX recipes, the additive causal mask is never quantized: ADD ops fed by a large
negative constant are pinned to float with a NO_QUANTIZE scope override (the scope of an op is its
output tensor names, as ai-edge-quantizer defines it). Per-tensor SNR from the quantizer's own
validator ranks the layers that lose most.
"""

from __future__ import annotations

import re

import numpy as np

from ..isolated import run_in_child

MASK_THRESHOLD = -1e3
# precision -> (ai-edge-quantizer kind, activation bits, weight bits)
TFLITE_RECIPES = {
    "w8a8": ("static", 8, 8),
    "w8a16": ("static", 16, 8),
    "dynamic": ("dynamic", None, 8),
}
SIGNATURE = "serving_default"
STATIC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


DAMAGE_KEPT = 32


def scope_regex(tensor_name: str) -> str:
    # An op's scope is ';'-joined output tensor names; match one whole name, not a prefix of another.
    return f"(^|;){re.escape(tensor_name)}(;|$)"


def constant_lhs_matmul_outputs(model_path: str) -> list[str]:
    """Output names of BATCH_MATMULs whose left operand is a constant: a SigLIP attention-pool head's latent query,
    folded through its projection by the converter. The dynamic recipe would make that operand int8 against a float
    right-hand side, a pairing LiteRT's hybrid BATCH_MATMUL cannot run (batch_matmul.cc: "lhs float32 and rhs int8,
    or equal types"; measured on ViT-B-16-SigLIP2's image tower), so these stay float. Read lazily from the
    flatbuffer (memory-mapped): a 1.1 GB text graph is never unpacked."""
    import mmap

    from ai_edge_litert import schema_py_generated as schema

    with open(model_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        found = []
        for g in range(model.SubgraphsLength()):
            sub = model.Subgraphs(g)
            for k in range(sub.OperatorsLength()):
                op = sub.Operators(k)
                code = model.OperatorCodes(op.OpcodeIndex())
                if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != schema.BuiltinOperator.BATCH_MATMUL:
                    continue
                buffer = model.Buffers(sub.Tensors(op.Inputs(0)).Buffer())
                if buffer.DataLength() > 0 or buffer.Offset() > 1:  # inline data, or the large-model offset form
                    found += [sub.Tensors(op.Outputs(i)).Name().decode() for i in range(op.OutputsLength())]
        return found


def mask_add_outputs(model_path: str) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model_path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # the public API has no op list; this is LiteRT's own helper
        if op["op_name"] != "ADD":
            continue
        for index in op["inputs"]:
            try:
                value = interpreter.get_tensor(index)
            except ValueError:
                continue
            if value.dtype.kind == "f" and value.size > 1 and value.min() <= MASK_THRESHOLD:
                found += [names[i] for i in op["outputs"]]
                break
    return found


@run_in_child
def tflite_embed_in_process(params: dict, arrays: dict) -> dict:
    from ..runtime.encoders import tflite_embed
    from ..runtime.token_table import HostTokenTable

    return {"embeds": tflite_embed(params["model"], arrays["x"], HostTokenTable.from_files(params))}


@run_in_child
def quantize_tflite_in_process(params: dict, arrays: dict) -> None:
    """Child-process body: quantize params['model'] into params['out'], write damage JSON to params['damage']."""
    import json

    from ai_edge_quantizer import quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

    kind, act_bits, weight_bits = TFLITE_RECIPES[params["precision"]]
    manager = recipe_manager.RecipeManager()
    float_matmuls: list[str] = []
    if kind == "static":
        # Weight-bearing ops only (as the ONNX recipes): quantizing every op also quantizes the final
        # L2 normalisation, and the outputs leave the unit sphere entirely (norms of 1e2-1e5 measured).
        for op in STATIC_OPS:
            manager.add_static_config(
                regex=".*",
                operation_name=getattr(TFLOperationName, op),
                activation_num_bits=act_bits,
                weight_num_bits=weight_bits,
            )
        # The quantizer has no integer EMBEDDING_LOOKUP; int8 weights with float compute still shrink
        # the token table, which is most of a text encoder's bytes.
        manager.add_weight_only_config(
            regex=".*", operation_name=TFLOperationName.EMBEDDING_LOOKUP, num_bits=weight_bits
        )
    else:
        manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=weight_bits)
        float_matmuls = constant_lhs_matmul_outputs(params["model"])
        for name in float_matmuls:
            manager.add_quantization_config(
                regex=scope_regex(name),
                operation_name=TFLOperationName.BATCH_MATMUL,
                algorithm_key=AlgorithmName.NO_QUANTIZE,
            )
    protected = mask_add_outputs(params["model"])
    for name in protected:
        manager.add_quantization_config(
            regex=scope_regex(name), operation_name=TFLOperationName.ADD, algorithm_key=AlgorithmName.NO_QUANTIZE
        )
    for name in params.get("keep_float", []):  # auto mixed precision: these ops stay float
        manager.add_quantization_config(
            regex=scope_regex(name),
            operation_name=TFLOperationName.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    qt = quantizer.Quantizer(params["model"])
    qt.load_quantization_recipe(manager.get_quantization_recipe())
    from ..runtime.encoders import text_feed

    samples = [text_feed(params["input_names"], arrays["calib"][i : i + 1]) for i in range(len(arrays["calib"]))]
    calibration = qt.calibrate({SIGNATURE: samples}, num_threads=2) if qt.need_calibration else None
    result = qt.quantize(calibration, enable_progress_report=False)
    result.export_model(params["out"], overwrite=True)

    damage = []
    if kind == "static" and params.get("want_damage"):
        check = qt.validate({SIGNATURE: samples[:8]}, error_metrics=[ValidationErrorMetric.SNR], num_threads=2)
        tensors = check.get_signature_comparison_result(SIGNATURE).intermediate_tensors
        damage = sorted(
            (
                {"tensor": name, "snr_db": round(float(10 * np.log10(max(v["snr"], 1e-12))), 2)}
                for name, v in tensors.items()
                if np.isfinite(v.get("snr", np.nan)) and v["snr"] > 0
            ),
            key=lambda d: d["snr_db"],
        )[:DAMAGE_KEPT]
    with open(params["damage"], "w") as f:
        json.dump(
            {
                "mask_ops_protected": len(protected),
                "constant_lhs_matmuls_float": len(float_matmuls),
                "layer_damage_top": damage,
                "recipe": {
                    "kind": kind,
                    "activation_bits": act_bits,
                    "weight_bits": weight_bits,
                    "tool": "ai-edge-quantizer",
                },
            },
            f,
        )
