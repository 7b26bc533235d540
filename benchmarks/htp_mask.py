"""How much the finite -1e4 attention mask costs a text encoder quantized for the Snapdragon HTP (uint16 activations).

    .venv/bin/python benchmarks/htp_mask.py --dir mcad-out [--sim 24]

The HTP recipe (compile/qnn.py) quantizes every activation to uint16, the masked attention scores too: their range
then spans the mask value, so one uint16 step is (|mask| + max score) / 65535, ~0.15 at -1e4, and every attention
logit is rounded to that. The script quantizes the export's text encoder as `compile --target qnn:` does (weights
uint8 per tensor, the recipe's first step), once with the -1e4 mask and once with the mask constant clamped to each
of --masks, and compares each against the fp32 encoder on held-out captions: with ONNX Runtime's CPU execution
provider on the QDQ model (which reproduces the HTP simulator to 1e-4 in cosine, compile/htp_recipe.py), and, with
--sim N, on the x86 HTP simulator for the first N captions. Writes benchmarks/results/htp_mask_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def clamp_mask(src: Path, dst: Path, value: float) -> int:
    """A copy of `src` whose constant mask entries (<= -1e3) are `value`; returns how many tensors changed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    changed = 0
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    ]
    for tensor in tensors:
        array = numpy_helper.to_array(tensor)
        # a causal tower's mask is a [L, L] table; a BERT-family tower's a scalar times (1 - attention_mask)
        if array.dtype == np.float32 and (array <= -1e3).any():
            fixed = np.where(array <= -1e3, np.float32(value), array).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(fixed, tensor.name))
            changed += 1
    onnx.save(model, str(dst))
    return changed


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", type=Path, required=True, help="an export (causal mask table or BERT-family padding mask)"
    )
    parser.add_argument("--name", default="embedded")
    parser.add_argument("--masks", default="-100", help="clamped mask values to try, comma-separated")
    parser.add_argument("--captions", type=int, default=300)
    parser.add_argument("--sim", type=int, default=0, help="also run this many captions on the HTP simulator")
    parser.add_argument("--soc", default="SM8650")
    args = parser.parse_args()

    from mcad_export.compile.qnn import htp_graph, qnn_session, quantize_for_htp
    from mcad_export.compile.targets import resolve
    from mcad_export.manifest import read_manifest
    from mcad_export.quantize.calibration import calibration_inputs, evaluation_inputs
    from mcad_export.runtime.encoders import onnx_embed, onnx_session, text_feed

    root = args.dir
    manifest = read_manifest(root)
    text = next(a for a in manifest["artifacts"] if a["path"] == "text_encoder.onnx")
    calib = calibration_inputs(root, manifest).for_encoder("text")
    held = evaluation_inputs(root, manifest).for_encoder("text")[: args.captions]
    reference = onnx_embed(root / text["path"], held)
    names = [i["name"] for i in text["inputs"]]
    soc = resolve(f"qnn:{args.soc}").soc
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        variants = [("-1e4 (export)", None)] + [(m, float(m)) for m in args.masks.split(",")]
        for label, value in variants:
            src = root / text["path"]
            if value is not None:
                clamped = work / f"mask{label}.onnx"
                assert clamp_mask(src, clamped, value) >= 1, "no mask constant found"
                src = clamped
            with htp_graph(src, work) as graph:
                qdq = work / f"qdq{label}.onnx"
                quantize_for_htp(graph, qdq, names, calib, "uint8 per tensor")
                session = onnx_session(qdq)
                cpu = np.concatenate(
                    [session.run(None, text_feed(names, held[i : i + 1]))[0] for i in range(len(held))]
                )
                row = {"mask": label, "cpu_ep": _stats(cosines(cpu, reference))}
                if args.sim:
                    sim = qnn_session(qdq, soc, allow_cpu_fallback=True)
                    out = np.concatenate([sim.run(None, text_feed(names, held[i : i + 1]))[0] for i in range(args.sim)])
                    row["htp_simulator"] = _stats(cosines(out, reference[: args.sim]))
                rows.append(row)
                print(json.dumps(row))
    result = {
        "export": root.name,
        "student": manifest["student"]["id"],
        "captions": len(held),
        "simulated": args.sim,
        "soc": args.soc,
        "weights": "uint8 per tensor, activations uint16 (compile qnn's first step)",
        "rows": rows,
    }
    out = REPO / "benchmarks" / "results" / f"htp_mask_{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(out)


def _stats(c: np.ndarray) -> dict:
    return {"cosine_mean": round(float(c.mean()), 6), "cosine_min": round(float(c.min()), 6)}


if __name__ == "__main__":
    main()
