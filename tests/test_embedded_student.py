"""The embedded student really retrieves, through the exported ONNX files and the torch-free tokenizer."""

import json

import numpy as np
import onnxruntime as ort

from mcad_export.contract import MANIFEST
from mcad_export.data.scenes import render_split
from mcad_export.metrics import recall_at
from mcad_export.runtime import Tokenizer
from mcad_export.runtime.preprocess import preprocess_batch
from mcad_export.students.checkpoint import sha256_of
from mcad_export.students.embedded import ASSET_DIR, CARD, CHECKPOINT


def test_run_writes_the_contract(embedded_run):
    out, proc = embedded_run
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "mcad-export/1" and manifest["student"]["family"] == "embedded"
    assert manifest["embed_dim"] == 128 and manifest["image"]["image_size"] == 64
    assert manifest["text"]["context_length"] == 77 and manifest["text"]["input_dtype"] == "int32"
    assert manifest["text"]["eot_token_id"] == 49407 and manifest["text"]["sot_token_id"] == 49406
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert by_name["image_encoder"]["inputs"][0] == {
        "name": "pixel_values",
        "dtype": "float32",
        "shape": ["batch", 3, 64, 64],
    }
    assert by_name["text_encoder"]["outputs"][0]["name"] == "text_embeds"
    for record in manifest["artifacts"] + manifest["files"]:
        path = out / record["path"]
        assert path.stat().st_size == record["size_bytes"] and sha256_of(path) == record["sha256"]
    for a in (by_name["image_encoder"], by_name["text_encoder"]):
        assert a["parity"]["passed"] and a["parity"]["cosine_min"] >= 0.9999 and a["parity"]["samples"] == 1000
    assert "text_encoder.onnx" in proc.stdout and "manifest" in proc.stdout
    evaluation = manifest["evaluation"]
    assert evaluation == {
        "samples": "scenes",
        "split": "heldout",
        "count": 1000,
        "reference": "reference/eval_embeddings.npz",
        "reference_source": "PyTorch fp32",
        "recall_meaningful": True,
    }
    reference = np.load(out / evaluation["reference"])
    assert reference["image_embeds"].shape == reference["text_embeds"].shape == (1000, 128)


def test_heldout_retrieval_through_onnx(embedded_run):
    out, _ = embedded_run
    manifest = json.loads((out / MANIFEST).read_text())
    images, captions = render_split("heldout", 1000)
    pixels = preprocess_batch(list(images), manifest["image"])
    image_session = ort.InferenceSession(str(out / "image_encoder.onnx"))
    text_session = ort.InferenceSession(str(out / "text_encoder.onnx"))
    img = np.concatenate(
        [image_session.run(None, {"pixel_values": pixels[i : i + 200]})[0] for i in range(0, 1000, 200)]
    )
    ids = Tokenizer.from_artifacts(out)(captions)
    txt = np.concatenate([text_session.run(None, {"input_ids": ids[i : i + 200]})[0] for i in range(0, 1000, 200)])
    recall = recall_at(img, txt)
    assert recall["t2i_r1"] >= 0.30 and recall["t2i_r10"] >= 0.80, recall
    card = json.loads((ASSET_DIR / CARD).read_text())["heldout_recall"]["student_fp32"]
    reference = np.load(out / "reference" / "eval_embeddings.npz")
    assert (img * reference["image_embeds"]).sum(1).min() >= 0.9999
    assert (txt * reference["text_embeds"]).sum(1).min() >= 0.9999
    # The exported model reproduces the card's PyTorch numbers.
    assert abs(recall["t2i_r1"] - card["t2i_r1"]) <= 0.005 and abs(recall["t2i_r10"] - card["t2i_r10"]) <= 0.005


def test_shipped_checkpoint_is_small_and_documented():
    assert (ASSET_DIR / CHECKPOINT).stat().st_size <= 16 * 2**20
    card = json.loads((ASSET_DIR / CARD).read_text())
    assert card["heldout_recall"]["student_fp32"]["t2i_r1"] >= 0.30
    assert card["data"]["heldout_images"] >= 1000
    assert f"{card['heldout_recall']['student_fp32']['t2i_r1']:.3f}" in (ASSET_DIR / "card.md").read_text()
