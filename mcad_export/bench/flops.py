"""The physical limit of a text query: matmul FLOPs of the text encoder at the query's token count.

Counted from the exported ONNX graph (shape inference at batch 1), so it holds for any student.
MatMul/Gemm carry nearly all of a transformer's arithmetic; softmax, norms and activations are
left out, which makes the limit slightly optimistic (a lower bound on time). A full-length
export computes all L positions, but a causal, EOT-pooled encoder needs only the first T; each
product is scaled by (T/L) per dimension that runs over positions (one for projections and MLPs,
two for attention scores and their weighted sum).
"""

from __future__ import annotations

import math


def _shape_table(model) -> dict[str, list]:
    import onnx

    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    table = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        table[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for init in graph.initializer:
        table[init.name] = list(init.dims)
    return table


def matmul_flops(path, context_length: int, tokens: float) -> dict:
    """{'full': FLOPs at L positions, 'at_tokens': FLOPs for the first `tokens` positions, 'unknown': n}."""
    import onnx

    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    shapes = _shape_table(model)
    full = at_tokens = 0.0
    unknown = 0
    ratio = tokens / context_length
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not a or not out:
            unknown += 1
            continue
        k = a[-2] if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) else a[-1]
        if k is None or None in out[-1:]:
            unknown += 1
            continue
        out = [1 if d is None else d for d in out]  # e.g. the pooled row after argmax: batch 1
        flops = 2.0 * math.prod(out) * k
        full += flops
        over_positions = sum(1 for d in [*out[-2:], k] if d == context_length)
        at_tokens += flops * ratio**over_positions
    return {
        "full": full,
        "at_tokens": at_tokens,
        "unknown_nodes": unknown,
        "context_length": context_length,
        "tokens": tokens,
    }
