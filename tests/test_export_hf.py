"""hf:<DIR> students: a CLIPModel folder made by the test, exported and compared with transformers."""

import json

import numpy as np
import onnxruntime as ort
import torch
from transformers import CLIPConfig, CLIPModel

from mcad_export.runtime import Tokenizer

from .conftest import run_cli


def test_hf_clip_folder(tmp_path):
    config = CLIPConfig(
        text_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            vocab_size=49408,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=24,
    )
    torch.manual_seed(3)
    model = CLIPModel(config).eval()
    folder = tmp_path / "tiny-clip"
    model.save_pretrained(folder)
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"hf:{folder}", "--out", out, "--samples", 8)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["student"]["family"] == "hf" and manifest["embed_dim"] == 24

    captions = ["a photo of a cat", "two dogs on a beach", ""]
    ids = Tokenizer.from_artifacts(out)(captions)
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref_txt = model.get_text_features(input_ids=torch.from_numpy(ids.astype(np.int64))).pooler_output
        ref_img = model.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output
    ref_txt = torch.nn.functional.normalize(ref_txt, dim=-1).numpy()
    ref_img = torch.nn.functional.normalize(ref_img, dim=-1).numpy()
    txt = ort.InferenceSession(str(out / "text_encoder.onnx")).run(None, {"input_ids": ids})[0]
    img = ort.InferenceSession(str(out / "image_encoder.onnx")).run(None, {"pixel_values": pixels})[0]
    assert np.abs(txt - ref_txt).max() < 1e-5
    assert np.abs(img - ref_img).max() < 1e-5
