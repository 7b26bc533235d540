"""LiteRT (XNNPACK) dynamic-range INT8 vs ONNX Runtime MatMulInteger on the same one-query text forward.

    .venv/bin/python benchmarks/litert_text_kernel.py --student open_clip:ViT-B-32 --random-init --name vit_b_32_random

The short-query text forward (export/text_forward.QueryText, what `short-query` exports) goes:
- to ONNX with a dynamic token axis, through the quantize stage's `dynamic` preparation (Gemm -> MatMul, int8
  token table, MatMulInteger per channel): the shipped CPU recipe;
- to TFLite by litert-torch, quantized by ai-edge-quantizer's dynamic-range recipe (int8 weights per channel,
  int8 activations per call: what XNNPACK's qd8-f32-qc8w kernels run). A dynamic token axis is tried first and
  its failure recorded; then one static file per token length, and one file holding every length as a
  signature (litert-torch shares the weights between signatures).
Each model is timed in a fresh process (batch 1, one thread, median of 40 after 5 warm-ups) that also reports
its peak RSS, at every length asked for (TOKENS by default); cosine vs PyTorch fp32 at each length.

Kernel rates: the tower's Linear layers alone (12 x [4 x 512->512, 512->2048, 2048->512], 37.7 M int8 weights,
more than this CPU's L3, chained with distinct weights as in the tower) as one ONNX graph of
DynamicQuantizeMatMul nodes and as one dynamic-range TFLite model, timed the same way: GOP/s at each length,
and the time those layers alone take against the tower's compute floor (its matmul work at the square-GEMM
int8 peak the bench measures).
Writes benchmarks/results/litert_text_kernel_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOKENS = (8, 16, 24)


def query_ids(tokens: int, vocab_top: int) -> np.ndarray:
    """A CLIP-like query: SOT, words, EOT (the largest id, what argmax pooling reads)."""
    ids = (np.arange(1, tokens + 1, dtype=np.int32)[None] * 37 % (vocab_top - 2) + 1).astype(np.int32)
    ids[0, 0], ids[0, -1] = vocab_top - 2, vocab_top - 1
    return ids


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def child(config: dict) -> dict:
    """One model in this fresh process: {tokens: p50 ms} (and the embeddings, for the cosine) plus peak RSS."""
    runners = {}
    if config["kind"] == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(config["path"], options, providers=["CPUExecutionProvider"])
        runners = {t: (lambda ids: session.run(None, {"input_ids": ids})[0]) for t in config["tokens"]}
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=config["path"], num_threads=1)
        for t in config["tokens"]:
            runner = interpreter.get_signature_runner(config["signatures"][str(t)])
            runners[t] = lambda ids, runner=runner: next(iter(runner(input_ids=ids).values()))
    result = {"p50_ms": {}, "embeds": {}}
    for t, run in runners.items():
        ids = chain_input(t) if config.get("chain") else query_ids(t, config["vocab_top"])
        for _ in range(5):
            run(ids)
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            run(ids)
            times.append(time.perf_counter() - t0)
        result["p50_ms"][str(t)] = round(float(np.median(times) * 1e3), 3)
        if not config.get("chain"):
            result["embeds"][str(t)] = np.asarray(run(ids)).ravel().tolist()
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def measure(config: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


LINEAR_CHAIN = [(512, 512)] * 4 + [(512, 2048), (2048, 512)]


def linear_chain(layers: int = 12):
    """The text tower's Linear layers alone, in order, with their own random weights."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        *[torch.nn.Linear(k, n, bias=False) for _ in range(layers) for k, n in LINEAR_CHAIN]
    ).eval()


def onnx_linear_chain(chain, path: Path) -> None:
    """The chain as DynamicQuantizeMatMul nodes (what ORT fuses the `dynamic` recipe into), int8 per channel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "input_ids"
    for i, linear in enumerate(chain):
        w = linear.weight.detach().numpy().T  # [K, N]
        scale = np.abs(w).max(axis=0) / 127
        q = np.round(w / scale).astype(np.int8)
        inits += [
            numpy_helper.from_array(q, f"w{i}"),
            numpy_helper.from_array(scale.astype(np.float32), f"s{i}"),
            numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"z{i}"),
        ]
        nodes.append(
            helper.make_node("DynamicQuantizeMatMul", [x, f"w{i}", f"s{i}", f"z{i}"], [f"y{i}"], domain="com.microsoft")
        )
        x = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "linear_chain",
        [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, ["m", 512])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["m", 512])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8  # onnx 1.23 writes 14, which ONNX Runtime 1.32 refuses (toolchain notes)
    onnx.save(model, str(path))


def chain_input(tokens: int) -> np.ndarray:
    return np.random.default_rng(tokens).standard_normal((tokens, 512)).astype(np.float32)


def litert_convert(module, lengths, path: Path, dynamic: bool = False, example=query_ids) -> None:
    """One signature per length (`len<N>`), or with `dynamic` one signature with a symbolic token axis."""
    import litert_torch
    import torch

    from mcad_export.export.tflite_export import _Named

    named = _Named(module, "text_embeds").eval()
    vocab_top = int(module.tower.token_embedding.weight.shape[0]) if hasattr(module, "tower") else 0
    with torch.no_grad():
        if dynamic:
            top = module.tower.positional_embedding.shape[0] - 1  # torch.export special-cases the full context
            tokens = torch.export.Dim("tokens", min=2, max=top)
            model = litert_torch.convert(
                named,
                sample_kwargs={"input_ids": torch.from_numpy(example(min(lengths[0], top), vocab_top))},
                dynamic_shapes={"input_ids": {1: tokens}},
            )
        else:
            builder = litert_torch
            for t in lengths:
                sample = {"input_ids": torch.from_numpy(example(t, vocab_top))}
                builder = builder.signature(f"len{t}", named, sample_kwargs=sample)
            model = builder.convert()
    model.export(str(path))


def litert_dynamic_range(src: Path, dst: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    qt.quantize(None, enable_progress_report=False).export_model(str(dst), overwrite=True)


def onnx_dynamic(module, example, work: Path) -> Path:
    """The quantize stage's `dynamic` recipe on the one-query ONNX graph (dynamic token axis)."""
    import onnx

    from mcad_export.export.onnx_export import export_encoder
    from mcad_export.quantize.calibration import ArrayReader
    from mcad_export.quantize.onnx_recipes import name_all_nodes, quantize_onnx

    fp32, named = work / "text.onnx", work / "text.named.onnx"
    export_encoder(module, example, fp32, "input_ids", "text_embeds", input_axes={1: "tokens"})
    name_all_nodes(fp32, named)
    dst = work / "text.dynamic.onnx"
    quantize_onnx(named, dst, "dynamic", ArrayReader(["input_ids"], example.numpy()), ())
    onnx.load(str(dst))  # fails here if the recipe wrote something ONNX cannot read
    return dst


def main() -> int:
    import torch

    from mcad_export.export.rewrites import make_export_safe
    from mcad_export.export.text_forward import QueryText
    from mcad_export.logs import quiet_root_logger
    from mcad_export.students import load_student

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="open_clip:ViT-B-32")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--name", required=True)
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)), help="query lengths, e.g. 77 (bidirectional)")
    args = parser.parse_args()
    tokens = tuple(int(t) for t in args.tokens.split(","))
    torch.manual_seed(0)
    student = load_student(args.student, weights=args.weights, random_init=args.random_init)
    make_export_safe(student.text_encoder)  # the rewrites export and short-query apply (plain attention)
    module = QueryText(student.text_encoder.model).eval()
    assert module.restated, "an open_clip text tower of standard blocks is expected"
    vocab_top = int(module.tower.token_embedding.weight.shape[0])
    with torch.no_grad():
        reference = {t: module(torch.from_numpy(query_ids(t, vocab_top))).numpy().ravel() for t in tokens}
    rows, notes = [], {}
    with tempfile.TemporaryDirectory() as tmp, quiet_root_logger():
        work = Path(tmp)
        try:
            litert_convert(module, tokens, work / "dynamic_axis.tflite", dynamic=True)
            notes["dynamic_token_axis"] = "converted"
        except Exception as error:  # what litert-torch says, kept as the measurement
            notes["dynamic_token_axis"] = (
                f"litert-torch failed: {type(error).__name__}: " + str(error).splitlines()[0][:300]
            )
        print(notes, flush=True)
        started = time.time()
        models = {}
        for t in tokens:
            litert_convert(module, (t,), work / f"len{t}.tflite")
            litert_dynamic_range(work / f"len{t}.tflite", work / f"len{t}.dynamic.tflite")
            models[f"LiteRT XNNPACK dynamic-range int8, static {t}-token file"] = {
                "kind": "litert",
                "path": str(work / f"len{t}.dynamic.tflite"),
                "tokens": [t],
                "signatures": {str(t): f"len{t}"},
            }
        if len(tokens) > 1:
            litert_convert(module, tokens, work / "multi.tflite")
            litert_dynamic_range(work / "multi.tflite", work / "multi.dynamic.tflite")
            models["LiteRT XNNPACK dynamic-range int8, one file, a signature per length"] = {
                "kind": "litert",
                "path": str(work / "multi.dynamic.tflite"),
                "tokens": list(tokens),
                "signatures": {str(t): f"len{t}" for t in tokens},
            }
        notes["litert_convert_and_quantize_s"] = round(time.time() - started, 1)
        onnx_path = onnx_dynamic(module, torch.from_numpy(query_ids(tokens[0], vocab_top)), work)
        models["ONNX Runtime MatMulInteger per channel (`dynamic`), dynamic token axis"] = {
            "kind": "onnx",
            "path": str(onnx_path),
            "tokens": list(tokens),
        }
        for kernel, config in models.items():
            measured = measure({**config, "vocab_top": vocab_top})
            size = sum(p.stat().st_size for p in Path(config["path"]).parent.glob(Path(config["path"]).name + "*"))
            cosine = {
                t: round(float(np.dot(np.asarray(e), reference[int(t)]) / np.linalg.norm(e)), 5)
                for t, e in measured["embeds"].items()
            }
            row = {
                "kernel": kernel,
                "p50_ms": measured["p50_ms"],
                "cosine_vs_fp32": cosine,
                "peak_rss_mb": measured["peak_rss_mb"],
                "file_mb": round(size / 1e6, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        kernels = kernel_rates(work, tokens)
    result = {
        "student": student.id,
        "random_init": args.random_init,
        "host": {"machine": platform.machine(), "cpu": _cpu_name()},
        "threads": 1,
        "batch": 1,
        "tokens": list(tokens),
        "notes": notes,
        "rows": rows,
        "linear_layers_alone": kernels,
    }
    out = REPO / "benchmarks" / "results" / f"litert_text_kernel_{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def kernel_rates(work: Path, tokens: tuple[int, ...]) -> dict:
    """The tower's Linear layers alone per kernel: p50 ms and GOP/s at each length, against the matmul floor at
    the bench's own square-GEMM int8 peak (measured here, in a fresh process, as `bench` measures it)."""
    from mcad_export.bench.common import run_probe

    peak = run_probe("mcad_export.bench.probe", {"mode": "gemm", "threads": 1}, 1, work)["peak_int8_gops"]
    chain = linear_chain()
    onnx_linear_chain(chain, work / "chain.onnx")
    configs = {
        "ONNX Runtime DynamicQuantizeMatMul": [
            {"kind": "onnx", "path": str(work / "chain.onnx"), "tokens": list(tokens)}
        ]
    }
    configs["LiteRT XNNPACK dynamic-range int8 (static file per length)"] = []
    for t in tokens:
        litert_convert(chain, (t,), work / f"chain{t}.tflite", example=lambda n, _: chain_input(n))
        litert_dynamic_range(work / f"chain{t}.tflite", work / f"chain{t}.dynamic.tflite")
        configs["LiteRT XNNPACK dynamic-range int8 (static file per length)"].append(
            {
                "kind": "litert",
                "path": str(work / f"chain{t}.dynamic.tflite"),
                "tokens": [t],
                "signatures": {str(t): f"len{t}"},
            }
        )
    macs = 12 * sum(k * n for k, n in LINEAR_CHAIN)
    rows = []
    for kernel, parts in configs.items():
        p50 = {}
        for config in parts:
            p50.update(measure({**config, "chain": True, "vocab_top": 0})["p50_ms"])
        floor = {t: 2 * macs * int(t) / (peak * 1e9) * 1e3 for t in p50}
        rows.append(
            {
                "kernel": kernel,
                "p50_ms": p50,
                "gop_per_s": {t: round(2 * macs * int(t) / (ms * 1e-3) / 1e9, 1) for t, ms in p50.items()},
                "times_matmul_floor": {t: round(ms / floor[t], 2) for t, ms in p50.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"int8_peak_gops": peak, "weights_mb": round(macs / 1e6, 1), "rows": rows}


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
