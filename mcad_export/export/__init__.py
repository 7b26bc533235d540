"""Export stage: student -> image_encoder.onnx + text_encoder.onnx + tokenizer + manifest.json.

Entry point: `export_student`. Everything is written to a staging folder and renamed into place
only after the contract and parity checks pass, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from .. import contract
from ..atomic import ensure_writable, locks_folder, staged_directory
from ..data.samples import load_samples
from ..data.scenes import SCENE_KINDS
from ..errors import ParityError
from ..manifest import dump_manifest, file_record, tool_versions
from ..runtime.encoders import TFLITE_SIGNATURE, onnx_embed, tflite_embed
from ..runtime.preprocess import preprocess_batch
from ..students.base import Student
from . import onnx_export, parity
from .rewrites import make_export_safe

_BATCH = 32
EVAL_SPLIT = "heldout"


def _tflite_artifact(
    stage, kind, module, in_name, out_name, dims, dtype, batches, reference, embed_dim, failures, say
) -> dict:
    from . import tflite_export

    filename = f"{contract.TFLITE_DIR}/{kind}_encoder.tflite"
    say(f"converting the {kind} encoder to TFLite")
    tflite_export.export_tflite(module, torch_inputs(batches[0], in_name), stage / filename, in_name, out_name)
    say(f"checking TFLite {kind} parity against PyTorch")
    result = parity.compare(reference, tflite_embed(stage / filename, np.concatenate(batches)))
    if not result["passed"]:
        failures.append(
            f"TFLite {kind} encoder min cosine {result['cosine_min']:.6f} < {result['threshold_cosine_min']}"
        )
    return {
        "name": f"{kind}_encoder.tflite",
        "encoder": kind,
        "format": "tflite",
        "runtime": "litert",
        "precision": "fp32",
        "inputs": input_records(in_name, dtype, [1, *dims]),
        "outputs": [{"name": out_name, "dtype": "float32", "shape": [1, embed_dim], "l2_normalised": True}],
        "signature": TFLITE_SIGNATURE,
        **file_record(stage, filename),
        "converter": "litert-torch",
        "parity": result,
    }


def input_records(in_name, dtype: int, shape: list) -> list[dict]:
    names = [in_name] if isinstance(in_name, str) else in_name
    return [{"name": n, "dtype": "float32" if dtype == 1 else "int32", "shape": shape} for n in names]


def torch_inputs(batch: np.ndarray, in_name, dtype=None) -> tuple:
    """The tensors a tower takes for one batch, in input order: pixels or ids, plus the attention mask of a masked
    text tower (derived from the ids, as every runner derives it)."""
    import torch

    from ..runtime.encoders import text_feed

    names = [in_name] if isinstance(in_name, str) else in_name
    feed = text_feed(names, batch)
    return tuple(torch.from_numpy(feed[n] if dtype is None else feed[n].astype(dtype)) for n in names)


def _torch_embed(module, batches, in_name, dtype=None):
    import torch

    with torch.no_grad():
        return np.concatenate([module(*torch_inputs(b, in_name, dtype)).numpy() for b in batches])


@locks_folder("export", arg=1)
def export_student(
    student: Student, out_dir, *, verify: bool = True, samples: int | None = None, tflite: bool = True, progress=None
) -> dict:
    """Exports both encoders; returns the manifest written to `out_dir/manifest.json`.

    The evaluation set (`samples` real inputs, default: the student's own) is embedded by the
    untouched PyTorch model; those reference embeddings prove parity now and are saved in
    `reference/` so later stages (the fidelity gate) compare every artifact with PyTorch fp32.
    """
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    ensure_writable(out_dir)
    pre = student.preprocess.to_manifest()

    count = samples or student.eval_count
    say(f"preparing {count} evaluation samples")
    images, captions = load_samples(student.sample_kind, EVAL_SPLIT, count, student.preprocess.image_size)
    pixels = preprocess_batch(images, pre)
    ids = student.tokenizer(captions)
    pixel_batches = [pixels[i : i + _BATCH] for i in range(0, len(pixels), _BATCH)]
    id_batches = [ids[i : i + _BATCH] for i in range(0, len(ids), _BATCH)]

    # Reference = the untouched model, with int64 ids exactly as open_clip/HF would feed it.
    say("running the PyTorch reference")
    text_names = list(contract.text_inputs(student.text_masked))
    ref_image = _torch_embed(student.image_encoder, pixel_batches, contract.IMAGE_INPUT)
    ref_text = _torch_embed(student.text_encoder, id_batches, text_names, np.int64)

    rewrites = make_export_safe(student.image_encoder)
    for key, value in make_export_safe(student.text_encoder).items():
        rewrites[key] += value

    encoders = [
        (
            "image",
            contract.IMAGE_ENCODER_ONNX,
            student.image_encoder,
            contract.IMAGE_INPUT,
            contract.IMAGE_OUTPUT,
            pixel_batches,
            ref_image,
            1,
            [3, student.preprocess.image_size, student.preprocess.image_size],
        ),
        (
            "text",
            contract.TEXT_ENCODER_ONNX,
            student.text_encoder,
            text_names,
            contract.TEXT_OUTPUT,
            id_batches,
            ref_text,
            6,
            [student.context_length],
        ),  # 1 = FLOAT, 6 = INT32 (onnx.TensorProto)
    ]
    artifacts, failures = [], []
    with staged_directory(out_dir) as stage:
        for kind, filename, module, in_name, out_name, batches, reference, dtype, dims in encoders:
            path = stage / filename
            say(f"exporting the {kind} encoder")
            onnx_export.export_encoder(module, torch_inputs(batches[0][:2], in_name), path, in_name, out_name)
            say(f"simplifying the {kind} encoder")
            simplified = onnx_export.simplify(path)
            onnx_export.check_contract(path, in_name, dtype, dims, out_name, student.embed_dim)
            say(f"checking {kind} parity against PyTorch")
            result = parity.compare(reference, onnx_embed(path, np.concatenate(batches)))
            if not result["passed"]:
                failures.append(
                    f"{kind} encoder min cosine {result['cosine_min']:.6f} < {result['threshold_cosine_min']} "
                    f"(mean {result['cosine_mean']:.6f}, max |diff| {result['max_abs_diff']:.2e}, "
                    f"{result['samples']} samples)"
                )
            artifacts.append(
                {
                    "name": f"{kind}_encoder",
                    "encoder": kind,
                    "format": "onnx",
                    "runtime": "onnxruntime",
                    "precision": "fp32",
                    "inputs": input_records(in_name, dtype, ["batch", *dims]),
                    "outputs": [
                        {
                            "name": out_name,
                            "dtype": "float32",
                            "shape": ["batch", student.embed_dim],
                            "l2_normalised": True,
                        }
                    ],
                    **file_record(stage, filename),
                    "simplify": simplified,
                    "parity": result,
                }
            )
            if tflite:
                artifacts.append(
                    _tflite_artifact(
                        stage,
                        kind,
                        module,
                        in_name,
                        out_name,
                        dims,
                        dtype,
                        batches,
                        reference,
                        student.embed_dim,
                        failures,
                        say,
                    )
                )
        if failures and verify:
            raise ParityError(
                "parity check failed: " + "; ".join(failures) + " (rerun with --no-verify to keep the files anyway)"
            )
        student.tokenizer.save(stage)
        (stage / contract.REFERENCE_DIR).mkdir()
        np.savez(stage / contract.REFERENCE_EMBEDDINGS, image_embeds=ref_image, text_embeds=ref_text)
        tokenizer_files = sorted(p.relative_to(stage).as_posix() for p in (stage / contract.TOKENIZER_DIR).iterdir())
        manifest = {
            "format": contract.MANIFEST_FORMAT,
            "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "student": {"id": student.id, "family": student.family, **student.info},
            "embed_dim": student.embed_dim,
            "image": pre,
            "text": {
                "context_length": student.context_length,
                "input_dtype": "int32",
                "inputs": text_names,
                "tokenizer": student.tokenizer.kind,
                "sot_token_id": student.tokenizer.sot_token_id,
                "eot_token_id": student.tokenizer.eot_token_id,
                "pad_token_id": student.tokenizer.pad_token_id,
                "pooling": student.text_pooling,
                "tokenizer_dir": contract.TOKENIZER_DIR,
            },
            "files": [file_record(stage, f) for f in [*tokenizer_files, contract.REFERENCE_EMBEDDINGS]],
            "evaluation": {
                "samples": student.sample_kind,
                "split": EVAL_SPLIT,
                "count": count,
                "reference": contract.REFERENCE_EMBEDDINGS,
                "reference_source": "PyTorch fp32",
                "recall_meaningful": student.sample_kind in SCENE_KINDS and not student.info.get("random_init"),
            },
            "artifacts": artifacts,
            "export": {
                "exporter": "torch.onnx (TorchScript)",
                "opset": onnx_export.OPSET,
                "rewrites": rewrites,
                "parity_verified": verify and not failures,
                "parity_failures": failures,
            },
            "tools": tool_versions(
                "mcad-export",
                "torch",
                "open_clip_torch",
                "transformers",
                "onnx",
                "onnxruntime",
                "onnxsim",
                "onnxslim",
                "litert-torch",
                "ai-edge-litert",
            ),
        }
        (stage / contract.MANIFEST).write_text(dump_manifest(manifest), encoding="utf-8")
    return manifest
