"""Hugging Face ChineseCLIPModel folders: loaded offline with Chinese-CLIP's real vocabulary, exported with parity
against the model's own get_text_features / get_image_features, and their bad inputs refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mcad_export.runtime import Tokenizer
from mcad_export.students.bert_text import minilm_folder

from .chinese_texts import CAPTIONS
from .conftest import one_line_error, run_cli

VOCAB = 21128


def _cn_vocab() -> Path:
    from cn_clip.clip import bert_tokenizer

    return Path(bert_tokenizer.default_vocab())


def tiny_chinese_clip(folder: Path, **text_overrides):
    from transformers import ChineseCLIPConfig, ChineseCLIPModel, ChineseCLIPTextConfig, ChineseCLIPVisionConfig

    text = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    config = ChineseCLIPConfig(
        text_config=ChineseCLIPTextConfig(**{**text, **text_overrides}).to_dict(),
        vision_config=ChineseCLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ).to_dict(),
        projection_dim=16,
    )
    torch.manual_seed(11)
    model = ChineseCLIPModel(config).eval()
    model.save_pretrained(folder)
    shutil.copyfile(_cn_vocab(), folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"})
    )
    return model


def test_hf_chinese_clip_folder_exports_with_parity(tmp_path):
    import cn_clip.clip as cn_clip

    folder = tmp_path / "tiny-chinese-clip"
    model = tiny_chinese_clip(folder)
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"hf:{folder}", "--out", out, "--samples", 8)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["text"]["inputs"] == ["input_ids", "attention_mask"] and manifest["embed_dim"] == 16
    assert manifest["export"]["rewrites"]["restated_bert_forward"] == 1
    assert all(a["parity"]["cosine_min"] >= 0.9999 for a in manifest["artifacts"] if "parity" in a)
    assert {a["format"] for a in manifest["artifacts"]} >= {"onnx", "tflite"}

    # the exported tokenizer is Chinese-CLIP's: its 52-token context and cn_clip's own ids
    captions = CAPTIONS[:20]
    tokenizer = Tokenizer.from_artifacts(out)
    ids = tokenizer(captions)
    assert ids.shape == (20, 52) and np.array_equal(ids, cn_clip.tokenize(captions).numpy())
    mask = tokenizer.attention_mask(ids)
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        reference_text = model.get_text_features(
            input_ids=torch.from_numpy(ids.astype(np.int64)), attention_mask=torch.from_numpy(mask.astype(np.int64))
        ).pooler_output
        reference_image = model.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output
    reference_text = torch.nn.functional.normalize(reference_text, dim=-1).numpy()
    reference_image = torch.nn.functional.normalize(reference_image, dim=-1).numpy()
    text = ort.InferenceSession(str(out / "text_encoder.onnx")).run(None, {"input_ids": ids, "attention_mask": mask})
    image = ort.InferenceSession(str(out / "image_encoder.onnx")).run(None, {"pixel_values": pixels})
    assert np.abs(text[0] - reference_text).max() < 1e-5 and np.abs(image[0] - reference_image).max() < 1e-5
    # pooled at [CLS] of the last hidden state as get_text_features does, not through BERT's pooler (it has none)
    assert model.text_model.pooler is None


@pytest.mark.parametrize("case", ["vocab_size", "relative_positions", "no_weights"])
def test_bad_chinese_clip_folders_are_refused(tmp_path, case):
    folder = tmp_path / "bad"
    if case == "relative_positions":
        tiny_chinese_clip(folder, position_embedding_type="relative_key")
        pattern = r"text tower .* relative_key positions is not supported"
    else:
        tiny_chinese_clip(folder)
    if case == "vocab_size":
        shutil.copyfile(minilm_folder() / "vocab.txt", folder / "vocab.txt")
        pattern = r"has 30522 tokens but the text tower's embedding table has 21128 rows"
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
        pattern = r"has no model.safetensors or pytorch_model.bin; pass --weights FILE"
    out = tmp_path / "out"
    one_line_error(run_cli("export", "--student", f"hf:{folder}", "--out", out, "--no-tflite"), pattern)
    assert not out.exists()
