"""open_clip students built outside the repo, exported, and compared with open_clip's own outputs."""

import json

import numpy as np
import onnxruntime as ort
import open_clip
import pytest
import torch
from PIL import Image

from mcad_export.data.samples import VARIED_CAPTIONS
from mcad_export.data.scenes import render, scene_at
from mcad_export.runtime import Tokenizer
from mcad_export.runtime.preprocess import preprocess_batch

from .conftest import run_cli


def _photos(n, size):
    # Non-square, larger than the model input: exercises resize + centre crop.
    return [render(scene_at("calib", i), 96).resize((int(size * 1.4), size), Image.BICUBIC) for i in range(n)]


def _compare_with_open_clip(model, out, preprocess_cfg):
    manifest = json.loads((out / "manifest.json").read_text())
    photos = _photos(6, manifest["image"]["image_size"])
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**preprocess_cfg), is_train=False
    )
    reference_pixels = torch.stack([transform(p) for p in photos])
    ours = preprocess_batch(photos, manifest["image"])
    np.testing.assert_allclose(ours, reference_pixels.numpy(), atol=1e-5)

    captions = list(VARIED_CAPTIONS)
    ids = Tokenizer.from_artifacts(out)(captions)
    np.testing.assert_array_equal(ids, open_clip.tokenize(captions, context_length=ids.shape[1]).numpy())

    with torch.no_grad():
        ref_img = model.encode_image(reference_pixels, normalize=True).numpy()
        ref_txt = model.encode_text(open_clip.tokenize(captions, ids.shape[1]), normalize=True).numpy()
    img = ort.InferenceSession(str(out / "image_encoder.onnx")).run(None, {"pixel_values": ours})[0]
    txt = ort.InferenceSession(str(out / "text_encoder.onnx")).run(None, {"input_ids": ids})[0]
    assert (img * ref_img).sum(1).min() >= 0.9999
    assert (txt * ref_txt).sum(1).min() >= 0.9999
    assert np.abs(np.linalg.norm(txt, axis=1) - 1).max() < 1e-5
    return manifest


def test_custom_config_training_checkpoint(tmp_path, tiny_open_clip_config):
    cfg = json.loads(tiny_open_clip_config.read_text())
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**cfg).eval()
    # open_clip's training checkpoint layout: {"epoch", "state_dict": {"module.<name>": tensor}}
    ckpt = tmp_path / "epoch_3.pt"
    torch.save(
        {"epoch": 3, "name": "tiny", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt
    )
    out = tmp_path / "out"
    proc = run_cli(
        "export", "--student", f"open_clip:{tiny_open_clip_config}", "--weights", ckpt, "--out", out, "--samples", 16
    )
    assert proc.returncode == 0, proc.stderr
    manifest = _compare_with_open_clip(model, out, open_clip.transform.PreprocessCfg(size=32).__dict__)
    assert manifest["embed_dim"] == 32 and manifest["text"]["context_length"] == 77
    assert manifest["export"]["rewrites"]["finite_masks"] >= 1
    assert manifest["export"]["rewrites"]["plain_attention"] == 4
    tflite = {a["path"]: a for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert set(tflite) == {"tflite/image_encoder.tflite", "tflite/text_encoder.tflite"}
    assert all(a["parity"]["cosine_min"] >= 0.9999 for a in tflite.values())


def test_vit_b_32_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    weights = tmp_path / "vitb32.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "out"
    proc = run_cli(
        "export", "--student", "open_clip:ViT-B-32", "--weights", weights, "--out", out, "--samples", 8, "--no-tflite"
    )
    assert proc.returncode == 0, proc.stderr
    manifest = _compare_with_open_clip(model, out, model.visual.preprocess_cfg)
    assert manifest["embed_dim"] == 512 and manifest["image"]["image_size"] == 224
    graph_inputs = {a["name"]: a["inputs"][0] for a in manifest["artifacts"]}
    assert graph_inputs["text_encoder"]["dtype"] == "int32"


@pytest.mark.parametrize("arch", ["MobileCLIP2-S0"])
def test_mobileclip_reparameterized(tmp_path, arch):
    torch.manual_seed(2)
    model = open_clip.create_model(arch, pretrained=None).eval()
    weights = tmp_path / "mobileclip.pth"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    proc = run_cli(
        "export", "--student", f"open_clip:{arch}", "--weights", weights, "--out", out, "--samples", 4, "--no-tflite"
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["student"]["reparameterized"] is True
    # MobileCLIP's pretrained tags use mean 0 / std 1; a weights file must get the same preprocessing.
    assert manifest["image"]["mean"] == [0.0, 0.0, 0.0] and manifest["image"]["std"] == [1.0, 1.0, 1.0]
    _compare_with_open_clip(
        model,
        out,
        {**model.visual.preprocess_cfg, **{k: manifest["image"][k] for k in ("mean", "std", "interpolation")}},
    )


def test_config_names_its_evaluation_data(tmp_path, tiny_open_clip_config):
    """A student trained on the scene data says so in its config; held-out recall then uses those scenes."""
    from mcad_export.errors import InputError
    from mcad_export.students import load_student

    cfg = {
        "model_cfg": json.loads(tiny_open_clip_config.read_text()),
        "evaluation": {"samples": "scenes", "count": 300},
    }
    path = tmp_path / "scenes-student.json"
    path.write_text(json.dumps(cfg))
    student = load_student(f"open_clip:{path}", random_init=True)
    assert (student.sample_kind, student.eval_count) == ("scenes", 300)
    assert (load_student(f"open_clip:{tiny_open_clip_config}", random_init=True).sample_kind,) == ("varied",)
    for bad, words in (
        ({"samples": "photos"}, "samples is one of scenes, scenes_zh, scenes_bilingual, varied"),
        ({"samples": "scenes", "count": 3}, "evaluation.count must be a whole number"),
    ):
        path.write_text(json.dumps({**cfg, "evaluation": bad}))
        with pytest.raises(InputError, match=words):
            load_student(f"open_clip:{path}", random_init=True)
