"""torch -> ONNX for one encoder: trace, simplify, check, and hold the graph to the contract."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx

from ..errors import ExportError, ShapeMismatchError, first_line

# Legacy TorchScript exporter at opset 17: faster, and friendlier to every later tool than the
# dynamo exporter (ORT quant_pre_process shape inference and onnx2tf fail on dynamo graphs).
OPSET = 17


def export_encoder(module, example, path: Path, input_name, output_name: str, input_axes=None) -> None:
    """`input_name`: one name, or a list with a tuple `example` (a masked text encoder: ids and attention mask).
    `input_axes`: the inputs' dynamic axes (default {0: "batch"}; the short-query text encoder adds tokens,
    the length buckets pass {} for a fully static graph)."""
    import torch

    names = [input_name] if isinstance(input_name, str) else list(input_name)
    examples = example if isinstance(example, tuple) else (example,)
    axes = None if input_axes == {} else {**{n: input_axes or {0: "batch"} for n in names}, output_name: {0: "batch"}}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python asserts/shape math in upstream models
        torch.onnx.export(
            module,
            examples,
            str(path),
            input_names=names,
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def simplify(path: Path) -> dict:
    """onnxsim first (the project's specification names it); onnxslim where onnxsim fails."""
    model = onnx.load(str(path))
    before = len(model.graph.node)
    errors = []
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim could not validate the simplified model")
        tool = f"onnxsim {onnxsim.__version__.lstrip('v')}"
    except Exception as e:  # noqa: BLE001 - any onnxsim failure falls back to onnxslim, recorded below
        errors.append(f"onnxsim: {first_line(e, 160)}")
        import onnxslim

        simplified = onnxslim.slim(model)
        tool = f"onnxslim {onnxslim.__version__}"
    onnx.save(simplified, str(path))
    return {
        "tool": tool,
        "nodes_before": before,
        "nodes_after": len(simplified.graph.node),
        **({"fallback_reason": errors[0]} if errors else {}),
    }


def check_contract(
    path: Path, input_name, input_dtype: int, input_dims: list, output_name: str, embed_dim: int
) -> None:
    """Graph-level contract check: names, dtypes and static dims. Any mismatch is fatal. `input_name` may be a
    list (a masked text encoder's input_ids and attention_mask share dtype and dims)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path.name} fails onnx.checker: {str(e).splitlines()[0]}") from None
    graph = onnx.load(str(path), load_external_data=False).graph
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    if [v.name for v in graph.input] != names:
        raise ShapeMismatchError(f"{path.name}: expected inputs {names}, found {[v.name for v in graph.input]}")
    for value in graph.input:
        _expect_io(path.name, "input", [value], value.name, input_dtype, ["batch", *input_dims])
    _expect_io(path.name, "output", graph.output, output_name, onnx.TensorProto.FLOAT, ["batch", embed_dim])


def _expect_io(file, kind, values, name, dtype, dims):
    if len(values) != 1 or values[0].name != name:
        raise ShapeMismatchError(f"{file}: expected one {kind} named {name!r}, found {[v.name for v in values]}")
    t = values[0].type.tensor_type
    got = [d.dim_param or d.dim_value for d in t.shape.dim]
    if t.elem_type != dtype:
        raise ShapeMismatchError(
            f"{file}: {kind} {name} has dtype {onnx.TensorProto.DataType.Name(t.elem_type)}, "
            f"expected {onnx.TensorProto.DataType.Name(dtype)}"
        )
    if len(got) != len(dims) or any(isinstance(want, int) and g != want for g, want in zip(got, dims)):
        raise ShapeMismatchError(f"{file}: {kind} {name} has shape {got}, expected {dims}")
