"""Parity misses are fatal and leave nothing behind; --no-verify keeps files and reports the numbers."""

import functools
import json

import pytest

import mcad_export.export as export_stage
from mcad_export.errors import ParityError, ShapeMismatchError
from mcad_export.export import onnx_export, parity
from mcad_export.students import load_student


@pytest.fixture()
def impossible_threshold(monkeypatch):
    # A threshold above 1 no real export can meet: the gate must fail, with numbers.
    monkeypatch.setattr(export_stage.parity, "compare", functools.partial(parity.compare, threshold=1.5))


def test_parity_miss_is_fatal_and_atomic(tmp_path, tiny_open_clip_config, impossible_threshold):
    student = load_student(f"open_clip:{tiny_open_clip_config}", random_init=True)
    out = tmp_path / "out"
    with pytest.raises(ParityError) as info:
        export_stage.export_student(student, out, samples=8, tflite=False)
    assert "image encoder min cosine" in str(info.value) and "< 1.5" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_existing_outputs_survive_a_failed_export(tmp_path, tiny_open_clip_config, impossible_threshold):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    student = load_student(f"open_clip:{tiny_open_clip_config}", random_init=True)
    with pytest.raises(ParityError):
        export_stage.export_student(student, out, samples=8, tflite=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_no_verify_keeps_files_and_reports(tmp_path, tiny_open_clip_config, impossible_threshold):
    student = load_student(f"open_clip:{tiny_open_clip_config}", random_init=True)
    manifest = export_stage.export_student(student, tmp_path / "out", verify=False, samples=8, tflite=False)
    assert len(manifest["export"]["parity_failures"]) == 2
    assert all(not a["parity"]["passed"] and a["parity"]["cosine_min"] > 0.9999 for a in manifest["artifacts"])
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["export"]["parity_verified"] is False


def test_shape_contract_mismatch_is_fatal(tmp_path, tiny_open_clip_config):
    student = load_student(f"open_clip:{tiny_open_clip_config}", random_init=True)
    export_stage.export_student(student, tmp_path / "out", samples=4, tflite=False)
    path = tmp_path / "out" / "image_encoder.onnx"
    onnx_export.check_contract(path, "pixel_values", 1, [3, 32, 32], "image_embeds", 32)
    with pytest.raises(ShapeMismatchError, match=r"output image_embeds has shape \['batch', 32\], expected"):
        onnx_export.check_contract(path, "pixel_values", 1, [3, 32, 32], "image_embeds", 64)
    with pytest.raises(ShapeMismatchError, match="dtype FLOAT, expected INT32"):
        onnx_export.check_contract(path, "pixel_values", 6, [3, 32, 32], "image_embeds", 32)
