"""The Android demo: the Java core against freshly written golden vectors, and `mcad-export bundle`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from mcad_export.bundle import bundle
from mcad_export.errors import InputError

from .conftest import REPO, run_cli

CORE = REPO / "android_demo" / "core"


def run_core_tests(golden, wordpiece=None, extra_env=None) -> tuple[int, int, str]:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "MCAD_GOLDEN_DIR": str(golden), **(extra_env or {})}
    if wordpiece is not None:
        env["MCAD_GOLDEN_WORDPIECE_DIR"] = str(wordpiece)
    proc = subprocess.run(["bash", str(CORE / "test.sh")], capture_output=True, text=True, timeout=600, env=env)
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert match, proc.stdout[-3000:] + proc.stderr[-2000:]
    return int(match.group(1)), int(match.group(2)), proc.stdout


def test_java_core_reproduces_golden_vectors_from_a_fresh_run(embedded_run, tmp_path):
    golden = tmp_path / "golden"
    proc = run_cli("golden", embedded_run[0], "--out", golden)
    assert proc.returncode == 0, proc.stderr
    cases = json.loads((golden / "tokens.json").read_text())["cases"]
    assert len(cases) > 50 and any(len(c["ids"]) == 77 for c in cases)  # a truncated long text is in the corpus
    passed, failed, out = run_core_tests(golden)
    assert {c["bucket"] for c in cases} == {16, 32, None}  # short, medium and full-context queries
    # every token case + every preprocessing image (EXIF-tagged JPEGs included) + top-k + truncation + length
    # buckets + index paths that hold a newline, '%' and a non-UTF-8 byte
    expected = len(cases) + len(json.loads((golden / "preprocess" / "cases.json").read_text())["cases"]) + 4
    # + the committed WordPiece vectors (WordPieceGoldenTest; test_java_wordpiece_... regenerates those)
    expected += len(
        json.loads((CORE / "src" / "test" / "resources" / "golden_wordpiece" / "tokens.json").read_text())["cases"]
    )
    # + the committed SentencePiece vectors, one folder per family (SentencePieceGoldenTest)
    spm_divergent = 0
    for folder in sorted((CORE / "src" / "test" / "resources" / "golden_sentencepiece").iterdir()):
        spm = json.loads((folder / "tokens.json").read_text())
        expected += len(spm["cases"])
        spm_divergent += len(spm["java_divergent"])
    # + the committed host token table vectors (HostTokenTableGoldenTest: one per case, and the out-of-range ids)
    expected += len(json.loads((CORE / "src/test/resources/golden_host_table/cases.json").read_text())["cases"]) + 1
    assert failed == 0 and passed == expected, out[-3000:]
    # the listed ftfy-only cases, reported (CLIP: BPE still exact on Python's cleaned text)
    assert out.count("known divergence") == 3 + spm_divergent


def test_java_core_fails_on_a_wrong_vector(embedded_run, tmp_path):
    golden = tmp_path / "golden"
    shutil.copytree(CORE / "src" / "test" / "resources" / "golden", golden)
    tokens = json.loads((golden / "tokens.json").read_text())
    tokens["cases"][0]["ids"][1] += 1
    (golden / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    passed, failed, _ = run_core_tests(golden)
    assert failed == 1 and passed > 50


def test_java_wordpiece_reproduces_fresh_python_vectors(tmp_path):
    from mcad_export.bundle.golden import write_wordpiece_golden
    from mcad_export.students.bert_text import minilm_folder, wordpiece_tokenizer

    fresh = tmp_path / "wordpiece"
    write_wordpiece_golden(wordpiece_tokenizer(minilm_folder(), 64, 30522), fresh)
    cases = json.loads((fresh / "tokens.json").read_text())["cases"]
    assert len(cases) > 300 and any(c["mask"][-1] == 1 for c in cases) and any("[UNK]" in c["text"] for c in cases)
    committed = CORE / "src" / "test" / "resources" / "golden"
    passed, failed, out = run_core_tests(committed, fresh)
    assert failed == 0 and passed >= len(cases), out[-3000:]
    # one wrong id in one case: exactly that case fails
    tokens = json.loads((fresh / "tokens.json").read_text())
    tokens["cases"][5]["ids"][1] += 1
    (fresh / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    passed, failed, _ = run_core_tests(committed, fresh)
    assert failed == 1


def app_copy(tmp_path):
    app = tmp_path / "app_demo"
    shutil.copytree(REPO / "android_demo", app, ignore=shutil.ignore_patterns("assets", "build", "resources"))
    return app


def test_bundle_matches_its_manifest_is_idempotent_and_safe(scratch_export, tmp_path):
    app = app_copy(tmp_path)
    assets = app / "app" / "src" / "main" / "assets" / "mcad"
    assets.mkdir(parents=True)
    (assets / "NOTES.txt").write_text("the user's own file")
    first = bundle(scratch_export, app)
    doc = json.loads((assets / "bundle.json").read_text())
    listed = {f["path"]: f for f in doc["files"]}
    on_disk = {str(p.relative_to(assets)) for p in assets.rglob("*") if p.is_file()} - {"bundle.json", "NOTES.txt"}
    assert set(listed) == on_disk and doc["thumbnails"]["count"] == doc["index"]["count"] == 1000
    for name, f in listed.items():
        data = (assets / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size_bytes"]
    text = doc["encoders"]["text"]
    manifest = json.loads((scratch_export / "manifest.json").read_text())
    assert text["source"] == manifest["deployment"]["text_encoder"] and text["accelerator"] == "CPU"
    assert doc["budget"]["passed"] and 0 < doc["budget"]["resident_estimate_mb"] < 100

    stamps = {p: p.stat().st_mtime_ns for p in assets.rglob("*") if p.is_file()}
    again = bundle(scratch_export, app)
    assert again["written"] == 0 and {p: p.stat().st_mtime_ns for p in assets.rglob("*") if p.is_file()} == stamps
    assert first["files"] == again["files"]

    # With the image encoder, then without: its file comes and goes; the user's file never moves.
    bundle(scratch_export, app, with_image_encoder=True)
    assert any(p.name.startswith("image_encoder") for p in (assets / "models").iterdir())
    bundle(scratch_export, app)
    assert not any(p.name.startswith("image_encoder") for p in (assets / "models").iterdir())
    assert (assets / "NOTES.txt").read_text() == "the user's own file"


def test_bundle_refuses_foreign_files_traversal_missing_targets_and_budget(scratch_export, tmp_path):
    app = app_copy(tmp_path)
    assets = app / "app" / "src" / "main" / "assets" / "mcad"
    (assets / "tokenizer").mkdir(parents=True)
    (assets / "tokenizer" / "vocab.json").write_text("{}")  # not ours: must not be overwritten
    with pytest.raises(InputError, match="was not written by mcad-export"):
        bundle(scratch_export, app)
    assert (assets / "tokenizer" / "vocab.json").read_text() == "{}"
    shutil.rmtree(assets)

    with pytest.raises(InputError, match="no text encoder compiled for litert:mediatek:MT6989.*compile"):
        bundle(scratch_export, app, target="litert:mediatek:MT6989")
    proc = run_cli("bundle", scratch_export, "--app", app, "--budget-mb", "1")
    assert proc.returncode == 6 and "over the 1 MB budget" in proc.stderr
    assert not assets.exists() or not any(assets.rglob("*.json"))

    manifest_path = scratch_export / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["deployment"] = None
    for a in manifest["artifacts"]:
        if a["path"] == "text_encoder.w8a8.onnx":
            a["path"] = "../../outside.onnx"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="outside the export"):
        bundle(scratch_export, app)
    with pytest.raises(InputError, match="unsafe"):
        from mcad_export.bundle import safe_name

        safe_name("models/../../../etc/passwd")
