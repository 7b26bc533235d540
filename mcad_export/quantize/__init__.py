"""Quantization stage: INT8 / 16-bit-activation / fp16 variants that provably keep retrieval.

Entry point: `quantize_artifacts(dir, precisions)`. For every fp32 ONNX encoder and precision it
quantizes with the recipe (onnx_recipes), localises per-layer damage (layer_damage) and, with
`auto`, keeps the most damaged layers in float step by step until the fidelity gate passes on a
tuning set (the calibration split, fp32 ONNX as reference). The held-out gate itself is run
independently by `verify` (quantize/verify.py).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..atomic import staged_directory
from ..contract import MANIFEST
from ..data.samples import load_samples
from ..manifest import dump_manifest, file_record, read_manifest
from ..runtime import Tokenizer
from ..runtime.preprocess import preprocess_batch
from .calibration import ArrayReader, EncoderInputs, calibration_inputs
from .fidelity import Gate, run_onnx, score
from ..logs import quiet_root_logger
from .layer_damage import node_damage
from .onnx_recipes import PRECISIONS, RECIPES, mask_consumers, name_all_nodes, quantize_onnx

TUNE_SPLIT, TUNE_COUNT = "calib", 500
DAMAGE_SAMPLES = 8
AUTO_STEPS = (1, 2, 4, 8, 16, 32, 64)

__all__ = ["quantize_artifacts", "PRECISIONS", "Gate"]


def quantize_artifacts(out_dir, precisions=("w8a8",), *, calib_images=None, calib_captions=None,
                       num_calib: int = 128, allow_small: bool = False, auto: bool = True, gate: Gate = Gate(),
                       progress=None) -> list[dict]:
    say = progress or (lambda message: None)
    root = Path(out_dir)
    manifest = read_manifest(root)
    calib = calibration_inputs(root, manifest, images_dir=calib_images, captions_file=calib_captions,
                               num_calib=num_calib, allow_small=allow_small)
    tune = _tuning_inputs(root, manifest)
    fp32 = [a for a in manifest["artifacts"] if a["format"] == "onnx" and a["precision"] == "fp32"]
    tune_reference = {f"{a['encoder']}_embeds": run_onnx(root / a["path"], a["inputs"][0]["name"],
                                                         tune.for_encoder(a["encoder"])) for a in fp32}
    records = []
    with staged_directory(root) as stage, tempfile.TemporaryDirectory() as work:
        for artifact in fp32:
            named = Path(work) / f"{artifact['name']}.named.onnx"
            name_all_nodes(root / artifact["path"], named)
            for precision in precisions:
                say(f"quantizing {artifact['name']} to {precision}")
                records.append(_quantize_one(artifact, precision, named, stage, calib, tune, tune_reference,
                                             auto, gate, say))
        written = {r["path"] for r in records}
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] not in written] + records
        manifest["quantization"] = {
            "calibration": calib.source, "calibration_samples": {"image": len(calib.pixels), "text": len(calib.ids)},
            "requested_calibration_samples": num_calib,
            "small_calibration": min(len(calib.pixels), len(calib.ids)) < num_calib,
            "skipped_unreadable_images": calib.skipped_images,
            "tuning_set": f"{manifest['evaluation']['samples']}:{TUNE_SPLIT} x{TUNE_COUNT} vs fp32 ONNX",
            "gate": gate.__dict__,
        }
        (stage / MANIFEST).write_text(dump_manifest(manifest), encoding="utf-8")
    return records


def _tuning_inputs(root: Path, manifest: dict) -> EncoderInputs:
    images, captions = load_samples(manifest["evaluation"]["samples"], TUNE_SPLIT, TUNE_COUNT,
                                    manifest["image"]["image_size"])
    return EncoderInputs(preprocess_batch(images, manifest["image"]), Tokenizer.from_artifacts(root)(captions),
                         f"tuning {TUNE_SPLIT}")


def _quantize_one(artifact, precision, named, stage, calib, tune, tune_reference, auto, gate, say) -> dict:
    encoder, input_name = artifact["encoder"], artifact["inputs"][0]["name"]
    filename = f"{artifact['name']}.{precision}.onnx"
    dst = stage / filename
    calib_array = calib.for_encoder(encoder)

    def attempt(keep_float):
        with quiet_root_logger():
            recipe = quantize_onnx(named, dst, precision, ArrayReader(input_name, calib_array), tuple(keep_float))
        result = score(encoder, run_onnx(dst, input_name, tune.for_encoder(encoder)), tune_reference)
        misses = gate.misses(result)
        step = {"kept_float": list(keep_float), "cosine_mean": round(result["cosine_mean"], 6),
                "recall_at_1": result["recall_at_1"], "recall_at_1_fp32": result["recall_at_1_fp32"],
                "top10_overlap": round(result["top10_overlap"], 4), "passed": not misses, "misses": misses}
        return recipe, step

    recipe, step = attempt([])
    steps = [step]
    damage = []
    if RECIPES[precision]["kind"] == "static":
        say(f"localising quantization error in {artifact['name']}.{precision}")
        damage = node_damage(named, dst, input_name, calib_array[:DAMAGE_SAMPLES], tuple(RECIPES[precision]["op_types"]))
    if auto and not step["passed"] and damage:
        import onnx

        protected = set(mask_consumers(onnx.load(str(named))))
        candidates = [d["node"] for d in damage if d["node"] not in protected]
        for k in AUTO_STEPS:
            k = min(k, len(candidates))
            say(f"{artifact['name']}.{precision} misses the gate; keeping {k} layer(s) in float")
            recipe, step = attempt(candidates[:k])
            steps.append(step)
            if step["passed"] or k == len(candidates):
                break
        if not step["passed"]:  # nothing passed: keep the plain model and say so rather than a bloated one
            recipe, step = attempt([])
            steps.append({**step, "note": "no mixed-precision step passed; kept the plain quantized model"})
    fp32_size = artifact["size_bytes"]
    record = {
        "name": f"{artifact['name']}.{precision}", "encoder": encoder, "format": "onnx", "runtime": "onnxruntime",
        "precision": precision, "inputs": artifact["inputs"], "outputs": artifact["outputs"],
        **file_record(stage, filename), "source": artifact["path"], "recipe": recipe,
        "size_ratio_vs_fp32": round(fp32_size / dst.stat().st_size, 2),
        "tuning": {"passed": steps[-1]["passed"], "steps": steps, "auto": auto},
        "layer_damage_top": damage[:10],
    }
    return record
