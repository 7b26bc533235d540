"""The host-table cut for TFLite text graphs (`litert:` NPU targets): host_gather.py's cut, made in the flatbuffer.

The export's TFLite text encoder looks its token table up inside the graph (litert-torch writes an EMBEDDING_LOOKUP
or a GATHER over a constant float32 [vocab, width] tensor, indexed by `input_ids` through shape-only ops). An NPU
compile of that graph carries the whole table; here the lookup op is replaced by a RESHAPE of a new float32 input
`token_embeds` [1, L, width] to the lookup's output shape (the same values in the same order, since the ids reach
the lookup only through shape-only ops), the ops that only fed the lookup are dropped, and the table's buffer goes:
it ships as host_gather.py's int8 rows beside the compiled model. `input_ids` stays an input where the graph still
reads it (a causal tower pools at its EOT). Proved like the ONNX cut, on the host's LiteRT: fed the fp32 rows the cut
graph must equal the whole one (host_gather.EXACT_MIN_COSINE); fed the int8 rows, its cosine is recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import TEXT_EMBEDS_INPUT, TEXT_INPUT
from ..errors import CompileError

# Ops that reshape the ids on their way to the lookup without reordering or changing them.
SHAPE_ONLY = ("RESHAPE", "CAST", "SQUEEZE", "EXPAND_DIMS")
LOOKUPS = ("EMBEDDING_LOOKUP", "GATHER")


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _op_name(model, op) -> str:
    from ai_edge_litert.tools import flatbuffer_utils

    code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
    return next((k for k, v in vars(_schema().BuiltinOperator).items() if v == code), str(code))


def _constant(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data
    if data is None or not len(data) or tensor.type != _schema().TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(data), dtype=np.float32).reshape(list(tensor.shape))


def _lookup(model, sub, ids: int):
    """(op index, table tensor index, table values) of the float lookup indexed by the `ids` tensor, or None."""
    producers = {out: k for k, op in enumerate(sub.operators) for out in op.outputs}
    for k, op in enumerate(sub.operators):
        name = _op_name(model, op)
        if name not in LOOKUPS:
            continue
        table_at, index_at = (op.inputs[1], op.inputs[0]) if name == "EMBEDDING_LOOKUP" else op.inputs[:2]
        table = _constant(model, sub.tensors[table_at])
        if table is None or table.ndim != 2 or (name == "GATHER" and getattr(op.builtinOptions, "axis", 0) != 0):
            continue
        while index_at in producers and _op_name(model, sub.operators[producers[index_at]]) in SHAPE_ONLY:
            index_at = sub.operators[producers[index_at]].inputs[0]
        if index_at == ids:
            return k, table_at, table
    return None


def _opcode(model, name: str) -> int:
    from ai_edge_litert.tools import flatbuffer_utils

    code = getattr(_schema().BuiltinOperator, name)
    for k, entry in enumerate(model.operatorCodes):
        if flatbuffer_utils.get_builtin_code_from_operator_code(entry) == code:
            return k
    entry = _schema().OperatorCodeT()
    entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


def _new_tensor(model, sub, name: str, shape: list[int], kind: int, data: bytes | None = None) -> int:
    schema = _schema()
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, kind, len(model.buffers) - 1
    sub.tensors.append(tensor)
    return len(sub.tensors) - 1


def _drop_dead_ops(sub) -> None:
    while True:
        read = {i for op in sub.operators for i in op.inputs} | set(sub.outputs)
        dead = [op for op in sub.operators if not any(out in read for out in op.outputs)]
        if not dead:
            return
        sub.operators = [op for op in sub.operators if op not in dead]


def cut_tflite_lookup(src: Path, dst: Path) -> tuple[np.ndarray, dict] | None:
    """Writes `dst`: the TFLite text graph `src` starting at `token_embeds`. Returns (the fp32 table, the record's
    inputs) or None where `src` has no float lookup over `input_ids` (an image encoder, a quantized table)."""
    from ai_edge_litert.tools import flatbuffer_utils

    schema = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(src.read_bytes()))
    if len(model.subgraphs) != 1 or len(model.signatureDefs or []) != 1:
        return None
    sub, signature = model.subgraphs[0], model.signatureDefs[0]
    by_name = {t.name.decode(): t.tensorIndex for t in signature.inputs}
    if TEXT_INPUT not in by_name:
        return None
    found = _lookup(model, sub, by_name[TEXT_INPUT])
    if found is None:
        return None
    at, table_at, table = found
    ids_shape = [int(d) for d in sub.tensors[by_name[TEXT_INPUT]].shape]
    if len(ids_shape) != 2 or ids_shape[0] != 1 or min(ids_shape) < 1:
        raise CompileError(
            f"{src.name}: input_ids must be static [1, L] before the token lookup is cut, got {ids_shape}"
        )
    out = sub.operators[at].outputs[0]
    out_shape = [int(d) for d in sub.tensors[out].shape]
    width = int(table.shape[1])
    if int(np.prod(out_shape)) != ids_shape[1] * width:
        raise CompileError(f"{src.name}: the token lookup's output {out_shape} is not [L={ids_shape[1]}] x {width}")
    embeds = _new_tensor(model, sub, TEXT_EMBEDS_INPUT, [1, ids_shape[1], width], schema.TensorType.FLOAT32)
    shape = _new_tensor(
        model,
        sub,
        f"{TEXT_EMBEDS_INPUT}_shape",
        [len(out_shape)],
        schema.TensorType.INT32,
        np.asarray(out_shape, dtype=np.int32).tobytes(),
    )
    reshape = schema.OperatorT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = _opcode(model, "RESHAPE"), [embeds, shape], [out]
    sub.operators[at] = reshape
    _drop_dead_ops(sub)
    model.buffers[sub.tensors[table_at].buffer].data = None  # the table leaves the file
    read = {i for op in sub.operators for i in op.inputs} | set(sub.outputs)
    keep = [i for i in sub.inputs if i in read]
    sub.inputs = [embeds, *keep]
    mapping = schema.TensorMapT()
    mapping.name, mapping.tensorIndex = TEXT_EMBEDS_INPUT.encode(), embeds
    signature.inputs = [mapping, *[t for t in signature.inputs if t.tensorIndex in keep]]
    dst.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    dtypes = {schema.TensorType.INT32: "int32", schema.TensorType.INT64: "int64"}
    inputs = [{"name": TEXT_EMBEDS_INPUT, "dtype": "float32", "shape": [1, ids_shape[1], width]}]
    inputs += [
        {"name": t.name.decode(), "dtype": dtypes.get(sub.tensors[t.tensorIndex].type, "int32"), "shape": ids_shape}
        for t in signature.inputs[1:]
    ]
    return table, {"inputs": inputs, "reads_input_ids": len(signature.inputs) > 1}
