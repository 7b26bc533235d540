"""Measurements that must run in a fresh, torch-free process: `python -m mcad_export.bench.probe CONFIG.json`.

Modes: `query` (the whole query path with a memory breakdown), `encoder` (one artifact's batch-1
latency), `index-sweep` (search latency vs gallery size and index kind), `gemm` (the peak GEMM
rate of this many threads, fp32 and int8), `bandwidth` (the read bandwidth of this many threads). The parent sets OMP/OPENBLAS thread counts in the environment
before this process starts, so numpy and faiss use exactly the threads asked for. Prints one
JSON object as the last line of stdout.
"""

from __future__ import annotations

import json
import sys
import time

from .stats import measure, memory_status

HEAVY_MODULES = ("torch", "open_clip", "transformers", "onnx", "tensorflow")


def query(cfg: dict) -> dict:
    memory = {"interpreter": memory_status()}
    import numpy as np  # noqa: F401  (counted as runtime libraries)

    if cfg["runtime"] == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import ai_edge_litert.interpreter  # noqa: F401
    if cfg["index_kind"] == "sq8":  # ivfpq searches in numpy (runtime/ivfpq.py), flat too
        import faiss  # noqa: F401
    from ..runtime.search import TextSearch

    memory["runtime_libraries"] = memory_status()
    search = TextSearch(
        cfg["dir"],
        cfg["artifact"],
        cfg["threads"],
        cfg["index_dir"],
        on_stage=lambda name: memory.__setitem__(name, memory_status()),
    )
    queries = cfg["queries"]
    state = {"i": 0}
    stages = {"tokenize_ms": [], "encode_ms": [], "search_ms": []}

    def one_query():
        _, times = search.timed_search(queries[state["i"] % len(queries)], cfg.get("k", 10))
        state["i"] += 1
        for key in stages:
            stages[key].append(times[key])

    latency = measure(one_query, **cfg.get("measure", {}))
    memory["queries"] = memory_status()
    n = latency["repeats"]
    tokens = [int((search.tokenizer(q)[0] != search.tokenizer.pad_token_id).sum()) for q in queries]
    return {
        "latency": latency,
        "stages_p50_ms": {k: float(np.median(v[-n:])) for k, v in stages.items()},
        "memory": memory,
        "peak_rss_mb": memory_status()["VmHWM"],
        "index_size": len(search.index),
        "query_tokens_mean": float(np.mean(tokens)),
        "torch_imported": _heavy_imported(),
    }


def encoder(cfg: dict) -> dict:
    import numpy as np

    from ..runtime.encoders import open_encoder

    run = open_encoder(
        cfg["path"], cfg["runtime"], cfg["threads"], cfg.get("optimization", "all"), **cfg.get("feed", {})
    )
    x = np.load(cfg["input"])
    latency = measure(lambda: run(x), **cfg.get("measure", {}))
    return {"latency": latency, "peak_rss_mb": memory_status()["VmHWM"], "torch_imported": _heavy_imported()}


def index_sweep(cfg: dict) -> dict:
    import numpy as np

    from ..runtime.index import GalleryIndex, synthetic_gallery

    real = np.load(cfg["real"]) if cfg.get("real") else None
    queries = np.load(cfg["queries"]).astype(np.float32)
    rows = []
    for size in cfg["sizes"]:
        gallery = synthetic_gallery(size, queries.shape[1], real=real)
        exact = None
        for kind in cfg["kinds"]:
            if kind == "ivfpq" and size < 1000:
                continue
            t0 = time.perf_counter()
            index = GalleryIndex.build(gallery, [str(i) for i in range(size)], kind)
            build_s = time.perf_counter() - t0
            state = {"i": 0}

            def one(index=index, state=state):  # bound now: `index` is deleted after this size
                index.search(queries[state["i"] % len(queries)][None], 10)
                state["i"] += 1

            latency = measure(one, **cfg.get("measure", {}))
            _, ids = index.search(queries, 10)
            if kind == "flat":
                exact = ids
            overlap = (
                float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])) if exact is not None else None
            )
            code_bytes = index.codes.sa_code_size() * size if index.codes is not None else 0
            rows.append(
                {
                    "gallery_size": size,
                    "kind": kind,
                    "build_s": round(build_s, 3),
                    "search_latency_ms": {k: latency[k] for k in ("p50", "p90", "p99", "repeats")},
                    "scan_bytes": code_bytes or gallery.nbytes,
                    "float_bytes": gallery.nbytes,
                    "top10_overlap_vs_flat": overlap,
                    "params": index.params,
                }
            )
            del index
        del gallery
    return {"rows": rows, "synthetic_beyond": len(real) if real is not None else 0}


def gemm(cfg: dict) -> dict:
    """Best single-matmul rate from numpy's BLAS and from onnxruntime's MLAS (whichever is faster), and the int8
    rate of onnxruntime's MatMulInteger."""
    import numpy as np

    best, int8 = {}, {}
    rng = np.random.default_rng(0)
    for n in cfg.get("sizes", (256, 512, 1024)):
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        stats = measure(lambda a=a, b=b: a @ b, warmup=2, min_repeats=5, min_seconds=0.5, max_seconds=5)
        best[f"numpy_{n}"] = 2 * n**3 / (stats["min"] * 1e-3) / 1e9
        best[f"onnxruntime_{n}"] = _ort_matmul_rate("MatMul", a, b, cfg["threads"])
        int8[f"onnxruntime_int8_{n}"] = _ort_matmul_rate(
            "MatMulInteger",
            rng.integers(0, 255, (n, n), dtype=np.uint8),
            rng.integers(-127, 127, (n, n), dtype=np.int8),
            cfg["threads"],
        )
    return {
        "gflops": {k: round(v, 2) for k, v in best.items()},
        "peak_gflops": round(max(best.values()), 2),
        "peak_source": max(best, key=best.get),
        "int8_gops": {k: round(v, 2) for k, v in int8.items()},
        "peak_int8_gops": round(max(int8.values()), 2),
    }


def bandwidth(cfg: dict) -> dict:
    """Read bandwidth of this many threads: a buffer 8x this CPU's largest cache is streamed by reductions that
    do ~1 op per element (sum, dot), best of several passes; the fastest reader is the rate (GB/s)."""
    import numpy as np

    size_mb = cfg.get("size_mb", 256)
    a = np.ones(size_mb * 1024 * 1024 // 4, np.float32)
    rates = {}
    for name, kernel in (("numpy_sum", lambda: a.sum()), ("blas_dot", lambda: a @ a)):
        stats = measure(kernel, warmup=1, min_repeats=5, min_seconds=0.5, max_seconds=5)
        rates[name] = round(a.nbytes / (stats["min"] * 1e-3) / 1e9, 2)
    return {
        "read_gbs": rates,
        "peak_read_gbs": max(rates.values()),
        "peak_source": max(rates, key=rates.get),
        "buffer_mb": size_mb,
    }


def _ort_matmul_rate(op: str, a, b, threads: int) -> float:
    """Ops/s (2 per multiply-accumulate) of one ONNX Runtime `op` (MatMul: fp32; MatMulInteger: u8 x s8 -> s32,
    the kernel dynamic INT8 runs) on an [n, n] input `a` and constant [n, n] weight `b`, in G/s."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    out_type = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))],
        [helper.make_tensor_value_info("y", out_type, None)],
        [numpy_helper.from_array(b, "b")],
    )
    # onnx 1.23 writes IR 14 by default, which older onnxruntime releases reject.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    stats = measure(lambda: session.run(None, {"a": a}), warmup=2, min_repeats=5, min_seconds=0.5, max_seconds=5)
    return 2 * a.shape[0] ** 3 / (stats["min"] * 1e-3) / 1e9


def _heavy_imported() -> list[str]:
    return [m for m in HEAVY_MODULES if m in sys.modules]


MODES = {"query": query, "encoder": encoder, "index-sweep": index_sweep, "gemm": gemm, "bandwidth": bandwidth}

if __name__ == "__main__":
    config = json.loads(open(sys.argv[1]).read())
    print(json.dumps(MODES[config["mode"]](config)))
