"""Running exported encoders on the host: ONNX Runtime and LiteRT (torch-free, imports lazy)."""

from __future__ import annotations

import contextlib
import os

import numpy as np

TFLITE_SIGNATURE = "serving_default"


def real_length(ids_row: np.ndarray) -> int:
    """Tokens up to and including EOT / [SEP]: the last non-zero id (padding is id 0 for every tokenizer kind;
    for CLIP this is also the row's largest id, what argmax pooling reads)."""
    return int(real_lengths(ids_row[None])[0])


def real_lengths(ids: np.ndarray) -> np.ndarray:
    """real_length of every row of an [N, L] id array."""
    ids = np.asarray(ids)
    return ids.shape[-1] - np.argmax(ids[..., ::-1] != 0, axis=-1)


def attention_mask(ids: np.ndarray) -> np.ndarray:
    """int32 [N, L]: 1 up to and including each row's EOT / [SEP], 0 on the padding after it (contract)."""
    return (np.arange(ids.shape[-1]) < real_lengths(ids)[..., None]).astype(np.int32)


def text_feed(names, x: np.ndarray, table=None) -> dict:
    """An encoder's inputs from token ids: `input_ids`, plus `attention_mask` where the graph takes one, and the
    host-gathered `token_embeds` (from `table`, a runtime.token_table.HostTokenTable) where the graph starts there."""
    from ..contract import TEXT_EMBEDS_INPUT, TEXT_MASK_INPUT

    names = list(names)
    if len(names) == 1 and table is None:
        return {names[0]: x}
    feed = {}
    for name in names:
        if name == TEXT_MASK_INPUT:
            feed[name] = attention_mask(x)
        elif name == TEXT_EMBEDS_INPUT:
            if table is None:
                raise ValueError(f"this graph takes {TEXT_EMBEDS_INPUT}: pass its host token table")
            feed[name] = table.gather(x)
        else:
            feed[name] = x
    return feed


def pick_bucket(sizes, length: int) -> int | None:
    """The shortest static length bucket holding `length` tokens (up to EOT), or None: use the full context.

    The Android app makes the same choice (ai.mcad.core.LengthBuckets; the golden vectors check both agree)."""
    return next((size for size in sorted(sizes) if size >= length), None)


def open_bucketed(buckets: dict, full, threads: int = 1):
    """Static length buckets {tokens: ONNX path} plus the full-context model, run the way a static NPU target
    runs them: each query on the shortest bucket that holds it, fed its ids cut to that bucket's length."""
    sessions = {tokens: open_encoder(path, "onnxruntime", threads) for tokens, path in buckets.items()}
    full_session = open_encoder(full, "onnxruntime", threads)

    def run(x):
        rows = []
        for row in x:
            tokens = pick_bucket(sessions, real_length(row))
            rows.append(sessions[tokens](row[None, :tokens]) if tokens else full_session(row[None]))
        return np.concatenate(rows)

    return run


def feed_options(artifact: dict) -> dict:
    """How a runner feeds an artifact (keyword arguments of open_encoder), from its manifest `dynamic_length`:
    a short-query encoder runs one query at a time, cut after EOT unless its record says `cut_after_eot: false`
    (a bidirectional tower's one-query encoder, which must see every position)."""
    spec = artifact.get("dynamic_length") or {}
    return {"dynamic_length": bool(spec), "cut_after_eot": bool(spec) and spec.get("cut_after_eot", True)}


def ort_optimization(artifact: dict) -> str:
    """The graph optimization level an artifact must run at (manifest: recipe.ort_graph_optimization)."""
    return artifact.get("recipe", {}).get("ort_graph_optimization", "all")


def onnx_session(path, threads: int = 0, optimization: str = "all", log_level: int = 3):
    """`optimization`: "all" (default) or "basic", as `ort_optimization(artifact)` says. `path` may also be the
    model's bytes (a Ray actor gets them from the object store)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = log_level
    options.intra_op_num_threads = threads
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[optimization]
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's pybind errors (Fail, InvalidGraph, InvalidProtobuf ...) share no public base
        from ..errors import InputError, first_line

        what = "the model" if isinstance(path, bytes) else str(path)
        first = first_line(e, 300)
        raise InputError(f"ONNX Runtime cannot load {what} ({first}); re-export or restore the file") from None


_ORT_TYPES = {"int32": "tensor(int32)", "int64": "tensor(int64)", "float32": "tensor(float)"}


def check_io(session, artifact: dict, path) -> None:
    """The loaded graph's inputs and outputs are the ones its artifact record lists (names, dtypes, rank): a model
    swapped under a re-signed manifest is refused in one line before anything is fed to it."""
    from ..errors import InputError

    def spec(items):
        return [(i.name, i.type, len(i.shape)) for i in items]

    def listed(items):
        return [(i["name"], _ORT_TYPES.get(i["dtype"], i["dtype"]), len(i["shape"])) for i in items]

    for kind, have, want in (
        ("inputs", spec(session.get_inputs()), listed(artifact.get("inputs") or [])),
        ("outputs", spec(session.get_outputs())[:1], listed(artifact.get("outputs") or [])[:1]),
    ):
        if have != want:
            raise InputError(
                f"{path}: the graph's {kind} {have} are not the {want} its manifest record lists; "
                "this is not the model the export wrote: re-export the folder"
            )


def onnx_embed(
    path,
    array: np.ndarray,
    batch: int = 50,
    threads: int = 0,
    optimization: str = "all",
    expected: dict | None = None,
    table=None,
) -> np.ndarray:
    """Embeddings in batches; the inputs are the session's own (a masked text encoder's mask derived from the ids,
    `token_embeds` gathered from `table`). `expected`: the artifact record the graph must match (check_io)."""
    session = onnx_session(path, threads, optimization)
    if expected is not None:
        check_io(session, expected, path)
    if session.get_inputs()[0].shape[0] == 1:  # static batch 1 (the short-query encoder)
        batch = 1
    names = [i.name for i in session.get_inputs()]
    return np.concatenate(
        [session.run(None, text_feed(names, array[i : i + batch], table))[0] for i in range(0, len(array), batch)]
    ).astype(np.float32)


def artifact_embed(path, artifact: dict, array: np.ndarray, threads: int = 0, table=None) -> np.ndarray:
    """An ONNX artifact's embeddings as the query path computes them: a short-query encoder one query at a time,
    cut after EOT as its record says (a masked tower's is fed only real tokens), others in batches; `table`: the host
    token table of a graph that starts at the embeddings."""
    options = {"optimization": ort_optimization(artifact), "expected": artifact, "table": table}
    if artifact.get("dynamic_length"):
        return open_encoder(path, "onnxruntime", threads, **feed_options(artifact), **options)(array).astype(np.float32)
    return onnx_embed(path, array, threads=threads, **options)


def tflite_embed(path, array: np.ndarray, table=None) -> np.ndarray:
    """TFLite encoders have a static batch of 1: one invoke per sample (see open_encoder)."""
    return open_encoder(path, "litert", threads=0, table=table)(array).astype(np.float32)


def open_encoder(
    path,
    runtime: str,
    threads: int = 1,
    optimization: str = "all",
    dynamic_length: bool = False,
    cut_after_eot: bool = True,
    expected: dict | None = None,
    table=None,
):
    """One loaded encoder as a callable: a batch array -> float32 embeddings [batch, D].

    `runtime` is the artifact's manifest runtime (onnxruntime | litert). LiteRT encoders have a
    static batch of 1, so a batch runs row by row. `dynamic_length` (the short-query text encoder,
    manifest `dynamic_length`, see feed_options): one row at a time, cut after its EOT (the row's largest id)
    so only real tokens are computed, or whole when `cut_after_eot` is false. `expected`: the artifact record the
    graph's inputs and outputs must match (check_io). `table`: the host token table (runtime/token_table.py) that
    feeds `token_embeds` to a graph starting at the embeddings.
    """
    if runtime == "onnxruntime":
        session = onnx_session(path, threads, optimization)
        if expected is not None:
            check_io(session, expected, path)
        names, outputs = [i.name for i in session.get_inputs()], [session.get_outputs()[0].name]
        if dynamic_length:  # batch 1: one query
            cut = real_length if cut_after_eot else len
            return lambda x: np.concatenate(
                [session.run(outputs, text_feed(names, row[None, : cut(row)], table))[0] for row in x]
            )
        return lambda x: session.run(outputs, text_feed(names, x, table))[0]
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter

        with _native_stderr_silenced():  # LiteRT's C++ logger prints an INFO line per XNNPACK delegate
            interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
            interpreter.allocate_tensors()
            runner = interpreter.get_signature_runner(TFLITE_SIGNATURE)
        names = list(runner.get_input_details())
        return lambda x: np.concatenate(
            [next(iter(runner(**text_feed(names, x[i : i + 1], table)).values())) for i in range(len(x))]
        )
    raise ValueError(f"no host runtime for {runtime!r}")


@contextlib.contextmanager
def _native_stderr_silenced():
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
