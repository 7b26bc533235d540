"""LiteRT (XNNPACK) dynamic-range INT8 vs ONNX Runtime MatMulInteger on the same one-query text encoder.

    .venv/bin/python benchmarks/litert_text_kernel.py --student open_clip:ViT-B-32 --random-init --name vit_b_32_random
    .venv/bin/python benchmarks/litert_text_kernel.py --student open_clip:CFG.json --weights W.safetensors --name NAME

The short-query text forward (export/text_forward.QueryText, the graph `short-query` exports) is converted once
by litert-torch with a dynamic token axis (torch.export Dim, 2..context - 1) and quantized by ai-edge-quantizer's
dynamic-range recipe (int8 weights, int8 activations per call: the project's `dynamic` TFLite recipe); the
same module goes to ONNX with a dynamic token axis and through the quantize stage's `dynamic` preparation
(Gemm -> MatMul, int8 token table, MatMulInteger per channel). Both are timed in this process at batch 1,
one thread (LiteRT `num_threads=1`, XNNPACK delegate as LiteRT applies it by default; ONNX Runtime
`intra_op_num_threads=1`), median of 40 after 5 warm-ups, at 6 / 12 / 24 tokens; cosine vs PyTorch fp32
on 64 generic captions fed at their real length. Writes benchmarks/results/litert_text_kernel_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOKENS = (6, 12, 24)


def timed(run, tokens: int, vocab_top: int) -> float:
    ids = (np.arange(1, tokens + 1, dtype=np.int32)[None] * 37 % (vocab_top - 2) + 1).astype(np.int32)
    ids[0, 0], ids[0, -1] = vocab_top - 2, vocab_top - 1
    for _ in range(5):
        run(ids)
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        run(ids)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def litert_runner(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    (input_name,) = runner.get_input_details()
    return lambda ids: next(iter(runner(**{input_name: ids}).values()))


def ort_runner(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids: session.run(None, {"input_ids": ids})[0]


def slice_free(module):
    """QueryText with its two length-dependent slices (positional table, causal mask) re-stated as gathers over
    the positions: litert-torch 0.10 cannot lower aten.slice with a symbolic end (JAX TracerBoolConversionError
    in _aten_slice). The same module goes to ONNX, so both runtimes run the same graph."""
    import torch

    class SliceFree(type(module)):
        def forward(self, ids):
            t = self.tower
            flat = ids.reshape(-1)  # ids[0] lowers to a slice with an open end, which fails the same way
            positions = torch.cumsum(torch.ones_like(flat), 0) - 1
            mask = torch.where(positions[None, :] > positions[:, None], -1e4, 0.0)
            rows = flat.argmax(dim=-1, keepdim=True)  # EOT = the largest id (CLIP's argmax pooling)
            x = t.token_embedding(flat) + t.positional_embedding[positions]
            blocks = list(t.transformer.resblocks)
            for i, (block, attention) in enumerate(zip(blocks, self.attention)):
                last = i == len(blocks) - 1
                attended = attention(block.ln_1(x), mask, rows if last else None)
                x = (x[rows] if last else x) + block.ls_1(attended)
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            pooled = t.ln_final(x) @ t.text_projection
            return torch.nn.functional.normalize(pooled, dim=-1)

    assert module.restated, "an open_clip text tower of standard blocks is expected (causal, as CLIP's)"
    module.__class__ = SliceFree
    return module


def convert_litert(module, example, path: Path) -> None:
    import litert_torch
    import torch

    from mcad_export.export.tflite_export import _Named

    # torch.export guards the full-context slice (n == context length) as a special case: stop one short of it
    tokens = torch.export.Dim("tokens", min=2, max=module.tower.positional_embedding.shape[0] - 1)
    with torch.no_grad():
        model = litert_torch.convert(
            _Named(module, "text_embeds").eval(),
            sample_kwargs={"input_ids": example},
            dynamic_shapes={"input_ids": {1: tokens}},
        )
    model.export(str(path))


def quantize_litert(src: Path, dst: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName

    manager = recipe_manager.RecipeManager()
    manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=8)
    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(manager.get_quantization_recipe())
    qt.quantize(None, enable_progress_report=False).export_model(str(dst), overwrite=True)


def onnx_dynamic(module, example, work: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from mcad_export.export.onnx_export import export_encoder
    from mcad_export.quantize.weight_prep import gemm_to_matmul, int8_token_table, save_with_aligned_external_data

    fp32 = work / "text.onnx"
    export_encoder(module, example, fp32, "input_ids", "text_embeds", input_axes={1: "tokens"})
    model = onnx.load(str(fp32))
    gemm_to_matmul(model)
    int8_token_table(model)
    quantize_dynamic(
        model,
        work / "inline.onnx",
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": True},
    )
    dst = work / "text.dynamic.onnx"
    save_with_aligned_external_data(onnx.load(str(work / "inline.onnx")), dst, "text.dynamic.onnx.data")
    return dst


def main() -> int:
    import torch

    from mcad_export.bench import GENERIC_QUERIES
    from mcad_export.export.rewrites import make_export_safe
    from mcad_export.export.text_forward import QueryText
    from mcad_export.logs import quiet_root_logger
    from mcad_export.students import load_student

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="open_clip:ViT-B-32")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    student = load_student(args.student, weights=args.weights, random_init=args.random_init)
    make_export_safe(student.text_encoder)  # the rewrites export and short-query apply (plain attention)
    module = slice_free(QueryText(student.text_encoder.model).eval())
    tokenizer = student.tokenizer
    ids = tokenizer(list(GENERIC_QUERIES)[:64]).astype(np.int32)
    captions = [row[None, : int(row.argmax()) + 1] for row in ids]
    with torch.no_grad():
        reference = np.concatenate([module(torch.from_numpy(c).long()).numpy() for c in captions])
    vocab_top = int(module.tower.token_embedding.weight.shape[0])
    example = torch.from_numpy(captions[0]).long()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_root_logger():
        work = Path(tmp)
        started = time.time()
        convert_litert(module, example, work / "text.tflite")
        quantize_litert(work / "text.tflite", work / "text.dynamic.tflite")
        litert_seconds = time.time() - started
        candidates = {
            "LiteRT fp32 (XNNPACK)": (litert_runner, work / "text.tflite", []),
            "LiteRT dynamic-range int8 (XNNPACK)": (litert_runner, work / "text.dynamic.tflite", []),
            "ONNX Runtime MatMulInteger per-channel (`dynamic`)": (
                ort_runner,
                onnx_dynamic(module, example, work),
                ["text.dynamic.onnx.data"],
            ),
        }
        for kernel, (make, path, extra) in candidates.items():
            run = make(path)
            embeds = np.concatenate([np.asarray(run(c.astype(np.int32))) for c in captions])
            cos = (embeds * reference).sum(-1) / np.linalg.norm(embeds, axis=-1)
            size = path.stat().st_size + sum((work / e).stat().st_size for e in extra)
            row = {
                "kernel": kernel,
                "p50_ms": {str(t): round(timed(run, t, vocab_top), 3) for t in TOKENS},
                "cosine_mean": round(float(cos.mean()), 5),
                "cosine_min": round(float(cos.min()), 5),
                "size_mb": round(size / 1e6, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "student": student.id,
        "random_init": args.random_init,
        "threads": 1,
        "batch": 1,
        "tokens": TOKENS,
        "litert_convert_and_quantize_s": round(litert_seconds, 1),
        "rows": rows,
    }
    out = REPO / "benchmarks" / "results" / f"litert_text_kernel_{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
