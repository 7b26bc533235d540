"""The floor of one text query: max(compute, memory traffic), not FLOPs alone.

At a few tokens a transformer text tower does little arithmetic per weight byte (two FLOPs per weight per
token), so a 12 x 512 tower reads its 151 MB of fp32 weights in more time than it multiplies them: the
query is memory-bound and its floor is bytes read / read bandwidth. The bench measures both rates on this
core (probe modes `gemm` and `bandwidth`) and reports

    limit = max(matmul FLOPs / GEMM peak, bytes read per query / read bandwidth)

per artifact, with the efficiency measured time / limit against it. Bytes read per query: every
initializer of the text encoder once (weights are streamed once per query when the token count is small),
except lookup tables (token and position embeddings), of which only the rows a query gathers are read;
plus the bytes the index scans (index_scan_bytes). Counted from the ONNX graph without loading weights.
"""

from __future__ import annotations

import math

# onnx TensorProto data types -> bytes per element (4-bit types are stored packed by MatMulNBits as uint8)
ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 21: 0.5, 22: 0.5}


def weight_bytes_per_query(path, tokens: float) -> dict:
    """{'weights': bytes of all initializers but lookup tables, 'tables': bytes of the lookup tables in the file (a
    256k-row token table is most of a SigLIP 2 text encoder), 'table_rows': bytes of the rows a query gathers (what a
    memory-mapped table makes resident), 'total': weights + table_rows}."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {init.name: (list(init.dims), ELEMENT_BYTES.get(init.data_type, 4)) for init in graph.initializer}
    tables = {
        node.input[0]
        for node in graph.node
        if node.op_type in ("Gather", "GatherBlockQuantized")
        and node.input[0] in sizes
        and len(sizes[node.input[0]][0]) >= 1
    }
    weights = rows = whole = 0.0
    for name, (dims, width) in sizes.items():
        n = math.prod(dims) * width
        if name in tables and dims and dims[0] > 1:
            rows += n / dims[0] * min(tokens, dims[0])
            whole += n
        else:
            weights += n
    return {"weights": int(weights), "tables": int(whole), "table_rows": int(rows), "total": int(weights + rows)}


def index_scan_bytes(kind: str, count: int, dim: int, params: dict) -> int:
    """Bytes one top-k search reads from the gallery index (runtime/index.py, runtime/ivfpq.py)."""
    floats = 4 * dim
    rerank = params.get("rerank", 0) * floats
    if kind == "flat":
        return count * floats
    if kind == "sq8":
        return count * dim + rerank
    if kind == "ivfpq":
        nlist, m = params["nlist"], params["m"]
        probed = count * min(params["nprobe"], nlist) / nlist
        codebooks = m * 256 * (dim // m) * 4
        return int(nlist * floats + codebooks + probed * (m + 8) + rerank)  # codes + int64 ids per probed row
    raise ValueError(f"unknown index kind {kind!r}")


def limit(flops: float, gflops: float, bytes_read: float, gbytes_per_s: float) -> dict:
    compute_ms = flops / (gflops * 1e9) * 1e3
    memory_ms = bytes_read / (gbytes_per_s * 1e9) * 1e3
    return {
        "compute_ms": round(compute_ms, 6),
        "memory_ms": round(memory_ms, 6),
        "limit_ms": round(max(compute_ms, memory_ms), 6),
        "bound": "memory" if memory_ms >= compute_ms else "compute",
    }
