"""The token lookup moved to the host: every text graph `compile` hands an NPU starts at the embeddings.

Why: inside an HTP context binary the token table is one more weight: quantized with a single uint8 scale for all
its rows and loaded whole into NPU memory, though a query reads at most `context` rows of it. For a SigLIP 2 text
tower that table is 256k x 768 = 197 M parameters, more than the rest of the tower; published Hexagon deployments
of SigLIP 2 move the lookup to the CPU by hand. Here it is automatic: the Gather over the token table is cut out of
the static graph, its output becomes the graph input `token_embeds` (float32 [1, L, width]), and the table ships
beside the compiled model as int8 rows with one float32 scale per row (the CPU recipes' table,
quantize/weight_prep.int8_rows), memory-mapped on the host (runtime/token_table.py) and on the phone
(ai.mcad.core.HostTokenTable). `input_ids` stays an input where the graph still reads it (a causal tower pools at
its EOT); a masked tower keeps deriving `attention_mask` from the ids.

The cut is proved on held-out captions before anything is quantized: the cut graph fed the table's own fp32 rows
must equal the uncut graph (it computes the same thing), and fed the int8 rows its cosine with the uncut graph is
recorded; the gate then judges the whole compiled path, int8 rows included.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..contract import HOST_TOKEN_ROWS, HOST_TOKEN_SCALES, TEXT_EMBEDS_INPUT, TEXT_INPUT
from ..errors import CompileError

# Ops between input_ids and the Gather that leave the ids' values alone (exporters cast int32 ids to int64).
ID_PASSTHROUGH = ("Cast", "Identity")
# ... and one that picks a batch row (the re-stated one-query forward, export/text_forward.py: ids[0]): a Gather on
# axis 0 with a constant scalar index, replayed on token_embeds so the graph sees the same rows.
# The cut graph fed exact fp32 rows against the uncut one: the same arithmetic, so only reassociation noise.
EXACT_MIN_COSINE = 0.99999
# Held-out captions the cut is proved on (prove_cut), each a batch-1 fp32 run.
PROVE_CUT_SAMPLES = 64


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def token_lookup(model):
    """(Gather node, float table, batch-row picks on the way from input_ids) of the lookup indexed by input_ids,
    or None. Position and token-type tables are indexed by other tensors, so no row-count guess is needed."""
    from onnx import TensorProto

    if not any(i.name == TEXT_INPUT for i in model.graph.input):
        return None
    producers = {out: node for node in model.graph.node for out in node.output}
    tables = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2 or _axis(node) != 0:
            continue
        name, picks = node.input[1], []
        while name in producers:
            step = producers[name]
            if step.op_type in ID_PASSTHROUGH:
                name = step.input[0]
            elif (
                step.op_type == "Gather"
                and _axis(step) == 0
                and not list(getattr(tables.get(step.input[1]), "dims", [0]))
            ):
                picks.insert(0, step)  # a scalar constant index: one batch row
                name = step.input[0]
            else:
                break
        if name == TEXT_INPUT:
            return node, table, picks
    return None


def _drop_dead_nodes(model) -> None:
    """Nodes whose outputs nothing reads any more (the ids' Cast that fed only the cut Gather)."""
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | graph_outputs
        dead = [n for n in model.graph.node if not any(out in used for out in n.output)]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def cut_token_gather(src: Path, dst: Path, table_dir: Path) -> dict | None:
    """Writes `dst`: the static text graph `src` starting at `token_embeds`, and the host table into `table_dir`
    (once per folder: every text graph of one student shares it, checked equal). None where `src` has no token
    lookup over input_ids (an image encoder)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..quantize.weight_prep import drop_unused_initializers

    model = onnx.load(str(src))
    found = token_lookup(model)
    if found is None:
        return None
    gather, table, picks = found
    values = numpy_helper.to_array(table)
    ids_value = next(i for i in model.graph.input if i.name == TEXT_INPUT)
    dims = [d.dim_value for d in ids_value.type.tensor_type.shape.dim]
    if len(dims) != 2 or not all(dims):
        raise CompileError(f"{src.name}: input_ids must be static [1, L] before the token lookup is cut, got {dims}")
    out, fed = gather.output[0], TEXT_EMBEDS_INPUT
    replayed = []
    for k, pick in enumerate(picks):  # the same batch-row picks, on the embeddings
        replayed.append(helper.make_node("Gather", [fed, pick.input[1]], [f"{fed}__pick{k}"], axis=0))
        fed = replayed[-1].output[0]
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name == out:
                node.input[k] = fed
    position = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    for offset, node in enumerate(replayed):
        model.graph.node.insert(position + offset, node)
    _drop_dead_nodes(model)
    drop_unused_initializers(model)
    read = {name for node in model.graph.node for name in node.input}
    inputs = [i for i in model.graph.input if i.name != TEXT_INPUT or TEXT_INPUT in read]
    embeds = helper.make_tensor_value_info(TEXT_EMBEDS_INPUT, TensorProto.FLOAT, [*dims, int(values.shape[1])])
    del model.graph.input[:]
    model.graph.input.extend([embeds, *inputs])
    onnx.save(model, str(dst))

    return {"reads_input_ids": TEXT_INPUT in read, **host_table(values, table_dir, src.name)}


def host_table(values: np.ndarray, table_dir: Path, what: str) -> dict:
    """Writes the fp32 table `values` as int8 rows + per-row scales into `table_dir` (once per folder: every text
    graph of one student shares it, checked equal) and returns the record's table part."""
    from ..quantize.weight_prep import int8_rows

    rows, scales = int8_rows(values)
    rows_path, scales_path = table_dir / HOST_TOKEN_ROWS, table_dir / HOST_TOKEN_SCALES
    if rows_path.exists():
        if not (np.array_equal(np.load(rows_path), rows) and np.array_equal(np.load(scales_path), scales)):
            raise CompileError(f"{what}'s token table differs from the one already compiled beside it")
    else:
        np.save(rows_path, rows)
        np.save(scales_path, scales)
    return {
        "input": TEXT_EMBEDS_INPUT,
        "rows": int(values.shape[0]),
        "width": int(values.shape[1]),
        "storage": "int8, one float32 scale per row, memory-mapped on the host",
        "bytes": int(rows.nbytes + scales.nbytes),
        "fp32_bytes": int(values.nbytes),
        "max_abs_error": float(np.abs(rows.astype(np.float32) * scales[:, None] - values).max()),
        "files": {"token_table": HOST_TOKEN_ROWS, "token_scales": HOST_TOKEN_SCALES},
    }


def prove_cut(uncut: Path, cut: Path, table_dir: Path, ids: np.ndarray) -> dict:
    """The cut ONNX graph against the uncut one on `ids` (one caption at a time, as the static graph runs)."""
    import onnx
    from onnx import numpy_helper

    from ..runtime.encoders import onnx_embed

    values = numpy_helper.to_array(token_lookup(onnx.load(str(uncut)))[1])
    return prove(lambda table=None: onnx_embed(cut if table else uncut, ids, batch=1, table=table), values, table_dir)


def prove(embed, values: np.ndarray, table_dir: Path) -> dict:
    """`embed()`: the whole graph's embeddings; `embed(table)`: the cut graph's, fed from `table`. Fed the fp32 rows
    `values` the cut must agree (EXACT_MIN_COSINE, else the compile fails); fed the int8 rows, its cosine is
    recorded."""
    from ..runtime.token_table import HostTokenTable

    class ExactRows:  # the fp32 table itself, fed through the same input
        @staticmethod
        def gather(x):
            return values[np.asarray(x)]

    reference = embed()
    exact = embed(ExactRows)
    int8 = embed(HostTokenTable.in_folder(table_dir))

    def cosines(a):
        return (a * reference).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(reference, axis=1)

    exact_cos, int8_cos = cosines(exact), cosines(int8)
    if exact_cos.min() < EXACT_MIN_COSINE:
        raise CompileError(
            f"the text graph cut at the token lookup disagrees with the whole graph (min cosine "
            f"{exact_cos.min():.6f} < {EXACT_MIN_COSINE}); this is a bug, please report it"
        )
    return {
        "samples": int(len(reference)),
        "fp32_rows_min_cosine": round(float(exact_cos.min()), 7),
        "fp32_rows_max_abs": float(np.abs(exact - reference).max()),
        "int8_rows_cosine_mean": round(float(int8_cos.mean()), 7),
        "int8_rows_min_cosine": round(float(int8_cos.min()), 7),
    }


def moved_to_host(target_id: str, what: str, host: dict) -> str:
    """The line every backend says once a text graph is cut and its cut proved."""
    return (
        f"{target_id}: {what} starts at the embeddings; its {host['rows']:,}-row token table is looked up on the host "
        f"(int8 rows, min cosine vs the whole graph {host['parity']['int8_rows_min_cosine']})"
    )


def static_batch_one(src: Path, dst: Path) -> None:
    import onnx

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # HTP graphs have static shapes
    # Workaround: onnxruntime 1.32's qnn_preprocess_model does dict.update(model.metadata_props), which
    # fails on the protobuf repeated field ("cannot convert dictionary update sequence element");
    # onnxsim writes such props, so they are dropped from this intermediate copy.
    del model.metadata_props[:]
    onnx.save(model, str(dst))


@contextmanager
def static_text_graph(src: Path, work: Path, table_dir: Path | None, ids: np.ndarray | None):
    """(path, host record) of the static batch-1 copy of `src` an NPU compiles, in a scratch folder inside `work`
    while the block runs; with `table_dir` a text graph is cut at the token lookup (its table written there) and the
    cut proved on `ids` (host record None where `src` has no lookup, or without `table_dir`)."""
    with tempfile.TemporaryDirectory(dir=work, prefix=".static-") as scratch:
        static, cut = Path(scratch) / "static.onnx", Path(scratch) / "cut.onnx"
        static_batch_one(src, static)
        host = cut_token_gather(static, cut, table_dir) if table_dir is not None else None
        if host is not None:
            host["parity"] = prove_cut(static, cut, table_dir, ids)
        yield (cut if host is not None else static), host


def input_records(model) -> list[dict]:
    """A compiled graph's inputs as artifact records (a text graph may start at `token_embeds`)."""
    from onnx import TensorProto

    dtypes = {TensorProto.FLOAT: "float32", TensorProto.INT32: "int32", TensorProto.INT64: "int64"}
    return [
        {
            "name": i.name,
            "dtype": dtypes.get(i.type.tensor_type.elem_type, str(i.type.tensor_type.elem_type)),
            "shape": [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim],
        }
        for i in model.graph.input
    ]


def prove_ids(root: Path, manifest: dict, tokens: int | None) -> np.ndarray:
    """Tuning captions a cut is proved on (cut to a length bucket's size: those that fit it)."""
    from ..quantize import TUNE_SPLIT
    from ..quantize.calibration import sample_inputs
    from ..runtime.encoders import real_lengths

    ids = sample_inputs(root, manifest, TUNE_SPLIT).for_encoder("text")
    if tokens:
        ids = ids[real_lengths(ids) <= tokens][:, :tokens]
    return np.ascontiguousarray(ids[:PROVE_CUT_SAMPLES])
