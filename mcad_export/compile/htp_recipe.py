"""What the QNN HTP QDQ model quantizes, and how its weight precision is chosen before the simulator sees it.

Activations are uint16 throughout (HTP's a16 path). Weights are tried in three steps, each put through the gate on
the tuning split before the next is considered:
1. onnxruntime's QNN default, one uint8 scale per weight tensor: what every student so far compiled with (the
   embedded student passes with it, simulator cosine 0.9999);
2. Linear weights (Gemm, and MatMul with a constant weight) symmetric int8 with one scale per output channel: the
   real all-MiniLM-L6-v2 tower's weights cannot take one scale per tensor (simulator cosine 0.940, top-10 overlap
   0.85); per channel it reaches 0.9953, within 0.0001 of what the CPU execution provider computes;
3. every Linear weight int16 (w16a16: MiniLM 0.9982 on the simulator), where int8 per channel still misses.
Keeping only the most damaged layers at int16 was measured and dropped: on MiniLM the loss is spread over all 36
Linear layers (int16 for the worst 4 / 12: top-10 overlap 0.948 / 0.947 against 0.949 for none, 0.971 for all).
LayerNorm, GELU and softmax left in float (fp16 on HTP) moved cosine by 0.0004: not where the loss is.

The tuning run uses the CPU execution provider on the QDQ model (seconds for 1,000 captions; the simulator takes
about a second per caption), compared with the fp32 ONNX encoder on the tuning split, through the same gate as
`quantize`. The held-out gate on the simulator (`verify`) stays the judge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Weight steps in the order tried, each with the precision its record carries.
WEIGHT_STEPS = (("uint8 per tensor", "w8a16"), ("int8 per channel", "w8a16"), ("int16", "w16a16"))


def linear_weight_overrides(model_path: Path, weights: str) -> dict:
    """TensorQuantOverrides for every Linear layer's constant weight at one of WEIGHT_STEPS (none for the default)."""
    import onnx
    from onnxruntime.quantization import QuantType

    if weights == WEIGHT_STEPS[0][0]:
        return {}
    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        if node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        if weights == "int16":
            overrides[node.input[1]] = [{"quant_type": QuantType.QInt16, "symmetric": True}]
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute) if node.op_type == "Gemm" else False
        # The output channel is the weight's last axis ([K, N]) unless Gemm stores it transposed ([N, K]).
        overrides[node.input[1]] = [{"quant_type": QuantType.QInt8, "symmetric": True, "axis": 0 if trans_b else 1}]
    return overrides


def weights_description(weights: str) -> str:
    others = "uint8 per tensor (others)"
    if weights == "int16":
        return f"int16 symmetric per tensor (Linear), {others}"
    if weights == "int8 per channel":
        return f"int8 symmetric per output channel (Linear), {others}"
    return "uint8 per tensor (all)"


def tuning_step(encoder: str, weights: str, embeds: np.ndarray, reference: dict, gate, population: dict) -> dict:
    """One weight step's record: quantize's tuning step (the same gate numbers), named by its weights."""
    from ..quantize import tuning_step as gate_step

    step = gate_step(encoder, embeds, reference, gate, (), population)
    del step["kept_float"]  # nothing is kept in float here; the step is named by its weights
    return {"weights": weights, **step}
