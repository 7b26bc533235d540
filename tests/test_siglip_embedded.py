"""The packaged SigLIP student (`embedded:siglip`): a SiglipModel trained on the scene data with the sigmoid loss and
its own SentencePiece tokenizer, so the gate is judged on rankings that mean something (1,000 held-out scenes)."""

import json

import numpy as np
import pytest

from mcad_export.data.scenes import caption_at
from mcad_export.quantize.fidelity import Gate
from mcad_export.students import load_student
from mcad_export.students.embedded import CARD, SIGLIP_DIR

from .conftest import run_cli
from .test_sentencepiece import texts


@pytest.fixture(scope="module")
def siglip_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("siglip-embedded") / "out"
    proc = run_cli("export", "--student", "embedded:siglip", "--out", out, "--no-tflite")
    assert proc.returncode == 0, proc.stderr
    return out


def card_recall() -> dict:
    return json.loads((SIGLIP_DIR / CARD).read_text())["heldout_recall"]


def test_the_packaged_student_is_siglip_with_siglips_tokenizer():
    """SiglipTokenizer (transformers) on the shipped spiece.model, id for id; the card's recall re-measured from the
    shipped float16 weights; the sigmoid loss's learned scale and bias shipped with them."""
    from transformers import SiglipTokenizer

    from mcad_export.training.siglip import heldout_recall

    student = load_student("embedded:siglip")
    assert student.id == "embedded:mcad-scenes-siglip-v1" and student.tokenizer.kind == "sentencepiece"
    assert (student.sample_kind, student.eval_count, student.context_length) == ("scenes", 1000, 32)
    hf = SiglipTokenizer(str(SIGLIP_DIR / "spiece.model"), model_max_length=32)
    cases = [caption_at("heldout", i) for i in range(200)] + texts(seed=41, count=100)
    expected = [hf(t, padding="max_length", max_length=32, truncation=True).input_ids for t in cases]
    np.testing.assert_array_equal(student.tokenizer(cases), np.array(expected))
    from transformers import SiglipModel

    shipped = SiglipModel.from_pretrained(str(SIGLIP_DIR), local_files_only=True).float().eval()
    recall = heldout_recall(shipped, student.tokenizer)
    assert recall["t2i_r1"] == pytest.approx(card_recall()["t2i_r1"], abs=0.002), recall
    assert float(shipped.logit_bias) < -1.0  # the sigmoid loss's bias, learned from -10: it trained as SigLIP trains


def test_int8_and_the_gate_on_meaningful_rankings(siglip_export):
    """Export parity on the held-out scenes, then every default recipe and w4 through verify: the fp32 rankings are
    real (not degenerate, R@10 far above chance), so each verdict rests on recall and the paired test, not cosine
    alone, and each record says why it passed or failed."""
    out = siglip_export
    manifest = json.loads((out / "manifest.json").read_text())
    parity = {a["path"]: a["parity"] for a in manifest["artifacts"] if a.get("parity")}
    assert parity["text_encoder.onnx"]["cosine_min"] >= 0.9999 and parity["image_encoder.onnx"]["cosine_min"] >= 0.9999
    assert manifest["text"]["tokenizer"] == "sentencepiece" and manifest["text"]["pooling"].startswith("last position")
    proc = run_cli("quantize", out, "--precision", "dynamic", "--precision", "w8", "--precision", "w4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    proc = run_cli("verify", out)
    records = {r["artifact"]: r for r in json.loads((out / "reports" / "fidelity.json").read_text())}
    fp32 = records["text_encoder.onnx"]
    assert not fp32["degenerate"] and fp32["recall_meaningful"] and fp32["samples"] == 1000
    # the exported fp32 pair retrieves as the shipped weights do in PyTorch (the card), and far above chance
    assert fp32["recall_at_1"] == pytest.approx(card_recall()["t2i_r1"], abs=0.003) and fp32["recall_at_10"] > 0.5
    quantized = [r for r in records.values() if r["precision"] != "fp32"]
    assert {"text_encoder.dynamic.onnx", "image_encoder.dynamic.onnx"} <= {r["artifact"] for r in quantized}
    gate = Gate()
    for r in quantized:
        assert not r["degenerate"] and r["r1_paired"]["samples"] == 1000, r
        # each verdict follows from its recorded numbers under the default gate, and a pass names no miss
        assert r["passed"] == (not gate.misses(r)) and r["passed"] == (not r["misses"]), r
        if r["passed"]:
            assert r["cosine_min"] >= gate.min_cosine_floor and r["top10_overlap"] >= gate.min_top10_overlap, r
    assert proc.returncode == (0 if all(r["passed"] for r in quantized) else 4), proc.stderr[-1000:]  # 4: a gate miss


def test_a_dynamic_tflite_siglip_image_tower_runs_and_only_tflite_is_requantized(tmp_path):
    """SigLIP's attention-pool head: its latent query, folded through its projection, is a constant left operand of a
    BATCH_MATMUL. The dynamic recipe keeps that one op float (LiteRT has no int8-left / float-right kernel; before,
    LiteRT aborted running the variant and the whole quantize with it), and `--format tflite` leaves ONNX alone."""
    from mcad_export.quantize.tflite_recipes import constant_lhs_matmul_outputs

    out = tmp_path / "out"
    proc = run_cli("export", "--student", "embedded:siglip", "--out", out, "--samples", 64)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pooled = constant_lhs_matmul_outputs(str(out / "tflite" / "image_encoder.tflite"))
    assert len(pooled) == 1 and "poolinghead" in pooled[0].lower(), pooled  # SiglipMultiheadAttentionPoolingHead
    assert constant_lhs_matmul_outputs(str(out / "tflite" / "text_encoder.tflite")) == []
    proc = run_cli("quantize", out, "--format", "tflite", "--precision", "dynamic", "--allow-small-calibration")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    variants = {a["path"]: a for a in manifest["artifacts"] if a["precision"] != "fp32"}
    assert set(variants) == {"tflite/image_encoder.dynamic.tflite", "tflite/text_encoder.dynamic.tflite"}
    image = variants["tflite/image_encoder.dynamic.tflite"]
    assert image["recipe"]["constant_lhs_matmuls_float"] == 1 and image["tuning"]["passed"], image["tuning"]
    assert image["tuning"]["steps"][0]["cosine_mean"] > 0.99
