"""Which kernel streams a text tower's weights fastest on this CPU: one-query text encoder, one thread.

    .venv/bin/python benchmarks/text_kernels.py --dir build/perf/vitb32 --name vit_b_32_random

DIR is an export with `text_encoder.dyn.onnx` (mcad-export export + short-query). For each kernel recipe
the script prepares the graph as the quantize stage does (Gemm -> MatMul, int8 token table), quantizes,
then times batch-1 queries at several token counts in this process (ONNX Runtime, intra_op_num_threads=1,
median of 40 after 5 warm-ups) and measures cosine vs fp32 on 64 generic captions. Kernels:
MatMulInteger (dynamic INT8, per-tensor / per-channel), MatMulNBits 8-bit and 4-bit at accuracy levels 1
(fp32 compute) and 4 (int8 compute), block sizes 32 and 128. Bytes per query are counted as the bench
counts them (bench/roofline.py). Writes benchmarks/results/text_kernels_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from mcad_export.bench import GENERIC_QUERIES
from mcad_export.bench.roofline import weight_bytes_per_query
from mcad_export.logs import quiet_root_logger, root_logger_preserved
from mcad_export.quantize.weight_prep import gemm_to_matmul, int8_token_table, save_with_aligned_external_data
from mcad_export.runtime import Tokenizer

TOKENS = (6, 12, 24)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(s, ids):
    return np.concatenate([s.run(None, {"input_ids": row[None, : int(row.argmax()) + 1]})[0] for row in ids])


def latency_ms(s, tokens: int, vocab_top: int) -> float:
    ids = np.arange(1, tokens + 1, dtype=np.int32)[None] * 37 % (vocab_top - 2) + 1
    ids[0, 0], ids[0, -1] = vocab_top - 2, vocab_top - 1  # SOT ... EOT (the largest id)
    for _ in range(5):
        s.run(None, {"input_ids": ids})
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        s.run(None, {"input_ids": ids})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def variants(prepared: Path, work: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with root_logger_preserved():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    for per_channel in (False, True):
        name = f"MatMulInteger int8 {'per-channel' if per_channel else 'per-tensor'}"
        out = work / f"dyn{int(per_channel)}.onnx"
        with quiet_root_logger():
            quantize_dynamic(
                prepared,
                work / "inline.onnx",
                op_types_to_quantize=["MatMul"],
                per_channel=per_channel,
                reduce_range=True,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
        save_with_aligned_external_data(onnx.load(str(work / "inline.onnx")), out, out.name + ".data")
        yield name, out
    for bits in (8, 4):
        for level in (1, 4):
            for block in (32, 128):
                name = f"MatMulNBits {bits}-bit level {level} block {block}"
                out = work / f"nbits{bits}_{level}_{block}.onnx"
                with quiet_root_logger():
                    quantizer = MatMulNBitsQuantizer(
                        onnx.load(str(prepared)),
                        bits=bits,
                        block_size=block,
                        is_symmetric=True,
                        accuracy_level=level,
                        op_types_to_quantize=("MatMul",),
                    )
                    quantizer.process()
                save_with_aligned_external_data(quantizer.model.model, out, out.name + ".data")
                yield name, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    source = args.dir / "text_encoder.dyn.onnx"
    ids = Tokenizer.from_artifacts(args.dir)(list(GENERIC_QUERIES)[:64])
    vocab_top = int(ids.max()) + 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = onnx.load(str(source))
        gemm_to_matmul(model)
        int8_token_table(model)
        prepared = work / "prepared.onnx"
        save_with_aligned_external_data(model, prepared, "prepared.onnx.data")
        reference = embed(session(source), ids)
        for name, path in [
            ("fp32 (as exported)", source),
            ("fp32, int8 token table", prepared),
            *variants(prepared, work),
        ]:
            s = session(path)
            got = embed(s, ids)
            cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
            row = {
                "kernel": name,
                "cosine_mean": round(float(cosine.mean()), 5),
                "cosine_min": round(float(cosine.min()), 5),
                "p50_ms": {t: round(latency_ms(s, t, vocab_top), 3) for t in TOKENS},
                "mb_read_per_query_at_12_tokens": round(weight_bytes_per_query(path, 12)["total"] / 1e6, 2),
            }
            print(json.dumps(row))
            rows.append(row)
    result = {"dir": str(args.dir), "tokens": list(TOKENS), "threads": 1, "rows": rows, "onnxruntime": ort.__version__}
    target = Path(__file__).parent / "results" / f"text_kernels_{args.name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(target)


if __name__ == "__main__":
    main()
