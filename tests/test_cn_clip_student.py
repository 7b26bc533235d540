"""`cn_clip:` students: checkpoints as Chinese-CLIP's own code writes them (training checkpoints with `module.`
prefixes and fp16 weights, FlashAttention's fused keys), exported with parity against cn_clip's own
`encode_image` / `encode_text`, and their bad inputs refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mcad_export.runtime import Tokenizer

from .chinese_texts import CAPTIONS
from .conftest import one_line_error, run_cli

VISION_VIT = {"embed_dim": 16, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8}
VISION_RN = {"embed_dim": 16, "image_resolution": 32, "vision_layers": "[1,1,1,1]", "vision_width": 8}
TEXT = {
    "vocab_size": 21128,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_hidden_size": 32,
    "text_initializer_range": 0.02,
    "text_intermediate_size": 64,
    "text_max_position_embeddings": 64,
    "text_num_attention_heads": 2,
    "text_num_hidden_layers": 2,
    "text_type_vocab_size": 2,
}


def cn_clip_checkpoint(tmp_path: Path, vision: dict, *, flash: bool = False, seed: int = 3):
    """cn_clip's own CLIP at a tiny size, saved as its trainer saves (fp16 weights as convert_weights leaves them,
    DDP `module.` prefixes, an optimizer state); returns (spec argument, checkpoint path, the fp32 reference model)."""
    from cn_clip.clip.model import CLIP, convert_state_dict, convert_weights

    (tmp_path / "vision.json").write_text(json.dumps(vision))
    (tmp_path / "text.json").write_text(json.dumps(TEXT))
    info = {**vision, **TEXT}
    if isinstance(info["vision_layers"], str):
        info["vision_layers"] = json.loads(info["vision_layers"])
    info.setdefault("vision_patch_size", None)
    torch.manual_seed(seed)
    model = CLIP(**info)
    convert_weights(model)  # fp16, as every cn_clip checkpoint holds it
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    if flash:
        state = convert_state_dict(state)
    path = tmp_path / "epoch_latest.pt"
    torch.save({"epoch": 3, "step": 120, "name": "tiny", "state_dict": state, "optimizer": {"state": {}}}, path)
    return f"{tmp_path / 'vision.json'}@{tmp_path / 'text.json'}", path, model.float().eval()


@pytest.mark.parametrize(
    "vision, flash",
    [(VISION_VIT, False), (VISION_VIT, True), (VISION_RN, False)],
    ids=["vit", "vit-flash-keys", "resnet"],
)
def test_cn_clip_checkpoint_exports_with_parity_to_its_own_forward(tmp_path, vision, flash):
    import cn_clip.clip as cn_clip

    spec, weights, model = cn_clip_checkpoint(tmp_path, vision, flash=flash)
    out = tmp_path / "out"
    proc = run_cli(
        "export", "--student", f"cn_clip:{spec}", "--weights", weights, "--out", out, "--samples", 8, "--no-tflite"
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"]["resize_mode"] == "squash" and manifest["embed_dim"] == 16
    assert manifest["student"]["spec"] == f"cn_clip:{spec}"  # absolute config paths: the bench reloads it from there
    assert all(a["parity"]["cosine_min"] >= 0.9999 for a in manifest["artifacts"] if "parity" in a)

    captions = CAPTIONS[:24]
    tokenizer = Tokenizer.from_artifacts(out)
    ids = tokenizer(captions)
    assert np.array_equal(ids, cn_clip.tokenize(captions).numpy())  # the installed package's vocabulary, 52 tokens
    pixels = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        reference_text = model.encode_text(torch.from_numpy(ids.astype(np.int64)))
        reference_image = model.encode_image(torch.from_numpy(pixels))
    reference_text = torch.nn.functional.normalize(reference_text, dim=-1).numpy()
    reference_image = torch.nn.functional.normalize(reference_image, dim=-1).numpy()
    mask = tokenizer.attention_mask(ids)
    text = ort.InferenceSession(str(out / "text_encoder.onnx")).run(None, {"input_ids": ids, "attention_mask": mask})
    image = ort.InferenceSession(str(out / "image_encoder.onnx")).run(None, {"pixel_values": pixels})
    assert np.abs(text[0] - reference_text).max() < 1e-5 and np.abs(image[0] - reference_image).max() < 1e-5


@pytest.mark.parametrize("case", ["unknown_text_tower", "vocab_size", "other_layout"])
def test_bad_cn_clip_students_are_refused(tmp_path, case):
    from mcad_export.students.bert_text import minilm_folder

    spec, weights, _ = cn_clip_checkpoint(tmp_path, VISION_VIT)
    if case == "unknown_text_tower":
        spec, pattern = (
            "ViT-B-16@RoBERTa-wwm-ext-huge-chinese",
            r"cn_clip:ViT-B-16@RoBERTa-wwm-ext-huge-chinese names no",
        )
    elif case == "vocab_size":  # a vocabulary beside the checkpoint wins over the package's; this one is MiniLM's
        (weights.parent / "vocab.txt").write_bytes((minilm_folder() / "vocab.txt").read_bytes())
        pattern = r"vocab.txt has 30522 tokens but the text tower's embedding table has 21128 rows"
    else:  # an RN50 config for a ViT checkpoint
        spec = f"{tmp_path / 'rn.json'}@{tmp_path / 'text.json'}"
        (tmp_path / "rn.json").write_text(json.dumps(VISION_RN))
        pattern = r"weights don't fit cn_clip:.*missing keys"
    out = tmp_path / "out"
    one_line_error(run_cli("export", "--student", f"cn_clip:{spec}", "--weights", weights, "--out", out), pattern)
    assert not out.exists()
