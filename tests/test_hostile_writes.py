"""Hostile and careless input, part two: writes outside the export, shifted paths, lost manifest updates,
stale indexes, odd images and misleading messages. Each case reproduces a defect found by probing copies of
a finished run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcad_export.contract import INDEX_DIR, MANIFEST

from .conftest import REPO, run_cli, tmpfs
from .test_hostile_folders import _cli, _edit_manifest, _flip_byte, _one_line_error


def test_a_manifest_name_never_decides_where_quantize_writes(scratch_export, capsys, tmp_path):
    for evil in ("../../../outside/pwn", "/tmp/pwn-absolute"):
        shutil.copy(scratch_export / MANIFEST, tmp_path / "manifest.bak")

        def edit(m, evil=evil):
            next(a for a in m["artifacts"] if a["path"] == "image_encoder.onnx")["name"] = evil

        _edit_manifest(scratch_export, edit)
        _one_line_error(
            *_cli(capsys, "quantize", scratch_export, "--precision", "dynamic", "--no-auto")[::2],
            "is not a plain file name",
        )
        shutil.copy(tmp_path / "manifest.bak", scratch_export / MANIFEST)
    assert (
        not list(scratch_export.parent.parent.parent.glob("outside"))
        and not Path("/tmp/pwn-absolute.dynamic.onnx").exists()
    )


def test_bundle_refuses_a_tampered_model(scratch_export, capsys, tmp_path):
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    manifest = json.loads((scratch_export / MANIFEST).read_text())
    chosen = manifest["deployment"]["text_encoder"]
    _flip_byte(scratch_export / next(a["path"] for a in manifest["artifacts"] if chosen in (a["path"], a["name"])))
    _one_line_error(*_cli(capsys, "bundle", scratch_export, "--app", app)[::2], "does not match the sha256")
    assert not (app / "app" / "src" / "main" / "assets").exists()


def test_newline_and_non_utf8_file_names_keep_every_path_in_place(scratch_export, capsys, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [b"a\nb.png", b"caf\xe9.png", b"plain.png", b"100%.png", b"z\r.png"]
    for i, name in enumerate(names):
        shutil.copy(scratch_export / "gallery" / f"heldout_{i:05d}.png", os.path.join(os.fsencode(photos), name))
    code, out, err = _cli(capsys, "index", scratch_export, "--images", photos)
    assert code == 0, err
    from mcad_export.runtime.index import GalleryIndex

    index = GalleryIndex.load(scratch_export / INDEX_DIR)
    assert len(index) == 5 and len((scratch_export / INDEX_DIR / "paths.txt").read_bytes().splitlines()) == 5
    on_disk = sorted(os.fsencode(index.path_of(i)) for i in range(len(index)))
    assert on_disk == sorted(os.path.join(os.fsencode(photos.resolve()), n) for n in names)
    assert all(os.path.isfile(index.path_of(i)) for i in range(len(index)))
    # Row i is still image i: embedding the file at path_of(i) again gives row i.
    from mcad_export.manifest import read_manifest
    from mcad_export.runtime.encoders import open_encoder
    from mcad_export.runtime.images import read_image
    from mcad_export.runtime.preprocess import preprocess_image

    manifest = read_manifest(scratch_export)
    embed = open_encoder(scratch_export / "image_encoder.onnx", "onnxruntime", 1)
    for i in range(len(index)):
        row = embed(preprocess_image(read_image(Path(index.path_of(i))), manifest["image"])[None])[0]
        assert float(row @ index.embeddings[i]) > 0.99999
    code, out, err = _cli(capsys, "search", scratch_export, "a red circle", "-k", "5")
    assert code == 0 and "a%0Ab.png" in out and "caf%E9.png" in out and "100%25.png" in out, out + err
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    code, out, err = _cli(capsys, "bundle", scratch_export, "--app", app)
    assert code == 0, err
    assert len(list((app / "app/src/main/assets/mcad/thumbs").iterdir())) == 5


def test_a_user_file_where_the_export_puts_a_folder_leaves_out_as_it_was(capsys, tmp_path, tiny_open_clip_config):
    out = tmp_path / "out"
    out.mkdir()
    (out / "reference").write_text("my notes")
    code, _, err = _cli(
        capsys,
        "export",
        "--out",
        out,
        "--student",
        f"open_clip:{tiny_open_clip_config}",
        "--random-init",
        "--no-tflite",
        "--samples",
        "8",
    )
    _one_line_error(code, err, "reference is a file where mcad-export writes a folder", "nothing was changed")
    assert sorted(p.name for p in out.iterdir()) == ["reference"] and (out / "reference").read_text() == "my notes"


def test_a_stale_index_is_refused_after_the_image_encoder_changed(scratch_export, capsys):
    # What a re-export of another student into the folder does to the manifest: a new image encoder, new digest.
    onnx_path = scratch_export / "image_encoder.onnx"
    import onnx

    model = onnx.load(str(onnx_path))
    model.doc_string = "another student"
    onnx.save(model, str(onnx_path))
    from mcad_export.manifest import file_record

    def edit(m):
        record = next(a for a in m["artifacts"] if a["path"] == "image_encoder.onnx")
        record.update(file_record(scratch_export, "image_encoder.onnx"))

    _edit_manifest(scratch_export, edit)
    _one_line_error(
        *_cli(capsys, "search", scratch_export, "a red circle")[::2],
        "no longer this export's image encoder",
        f"mcad-export index {scratch_export}",
    )
    assert _cli(capsys, "index", scratch_export)[0] == 0
    assert _cli(capsys, "search", scratch_export, "a red circle")[0] == 0


def test_a_second_writer_on_one_folder_refuses_with_one_line(scratch_export):
    from mcad_export.atomic import LOCK_FILE, folder_lock

    with folder_lock(scratch_export, "quantize"):
        before = (scratch_export / MANIFEST).read_bytes()
        for args in (["short-query", scratch_export], ["index", scratch_export], ["quantize", scratch_export]):
            proc = run_cli(*args, timeout=120)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
            assert "being written by another mcad-export stage" in proc.stderr and "quantize" in proc.stderr
        assert (scratch_export / MANIFEST).read_bytes() == before
    assert not (scratch_export / LOCK_FILE).exists()
    proc = run_cli("search", scratch_export, "a red circle")  # readers never take the lock
    assert proc.returncode == 0, proc.stderr


def _exif_pair(folder: Path, source: Path, orientation: int, suffix: str):
    from PIL import Image

    upright = Image.open(source).convert("RGB")
    # What a camera writes: the sensor's rows, plus the tag that turns them upright.
    stored = {
        6: upright.transpose(Image.Transpose.ROTATE_90),
        8: upright.transpose(Image.Transpose.ROTATE_270),
        3: upright.transpose(Image.Transpose.ROTATE_180),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(folder / f"tagged{suffix}", exif=exif.tobytes(), **({"quality": 100} if suffix == ".jpg" else {}))
    upright.save(folder / f"upright{suffix}", **({"quality": 100} if suffix == ".jpg" else {}))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_when_indexing(scratch_export, capsys, tmp_path, orientation):
    photos = tmp_path / "photos"
    photos.mkdir()
    _exif_pair(photos, scratch_export / "gallery" / "heldout_00003.png", orientation, ".png")
    assert _cli(capsys, "index", scratch_export, "--images", photos)[0] == 0
    from mcad_export.runtime.index import GalleryIndex

    index = GalleryIndex.load(scratch_export / INDEX_DIR)
    rows = {Path(index.path_of(i)).name: index.embeddings[i] for i in range(len(index))}
    assert float(rows["tagged.png"] @ rows["upright.png"]) > 0.99999


def test_exif_jpeg_is_read_upright():
    import io

    from PIL import Image

    from mcad_export.runtime.images import read_image

    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes())
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"exif-{os.getpid()}.jpg"
    path.write_bytes(buf.getvalue())
    try:
        upright = read_image(path)
        decoded = Image.open(path).convert("RGB")
        assert upright.size == (40, 60)
        assert np.array_equal(np.asarray(upright), np.asarray(decoded.transpose(Image.Transpose.ROTATE_270)))
    finally:
        path.unlink()


def test_sixteen_bit_pngs_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from mcad_export.runtime.images import read_image

    gradient = np.linspace(0, 65535, 64 * 256).reshape(64, 256).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    pixels = np.asarray(read_image(tmp_path / "g16.png"))
    assert (pixels == 255).mean() < 0.01 and abs(pixels.mean() - 127.5) < 1.0
    expected = np.rint(gradient / 257.0)
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 1


def test_sigkill_leaves_nothing_outside_and_the_next_stage_cleans_up(tmp_path, tiny_open_clip_config):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcad_export",
            "export",
            "--out",
            str(out),
            "--student",
            f"open_clip:{tiny_open_clip_config}",
            "--random-init",
            "--no-tflite",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / ".mcad-staging").glob("*/image_encoder.onnx")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((out / ".mcad-staging").glob("*")), "the kill should have left a staging folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside the export
    from mcad_export.atomic import staged_directory

    with staged_directory(out) as stage:
        (stage / "x.txt").write_text("x")
    assert not (out / ".mcad-staging").exists() and (out / "x.txt").is_file()


def test_a_fifo_as_weights_is_refused_at_once(capsys, tmp_path, tiny_open_clip_config):
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    started = time.time()
    proc = run_cli(
        "export",
        "--out",
        tmp_path / "out",
        "--student",
        f"open_clip:{tiny_open_clip_config}",
        "--weights",
        fifo,
        timeout=120,
    )
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and time.time() - started < 60
    assert len(proc.stderr.strip().splitlines()) == 1


def test_index_rows_and_paths_must_agree(scratch_export, capsys):
    from .test_hostile_folders import _rewrite_index_embeddings

    _rewrite_index_embeddings(scratch_export, lambda rows: rows[:-3])
    _one_line_error(*_cli(capsys, "search", scratch_export, "a red circle")[::2], "rows", "mcad-export index")


def test_run_validates_every_option_before_the_first_stage(tmp_path):
    started = time.time()
    for args, phrase in (
        (["--target", "foo:bar"], "unknown target"),
        (["--app", "/nonexistent"], "not the Android demo"),
        (["--images", tmp_path / "nope"], "is not a folder"),
        (["--num-calib", "0"], "--num-calib"),
        (["--target", "aihub:"], "names no SoC"),
    ):
        proc = run_cli("run", "--out", tmp_path / "out", *args, timeout=120)
        assert proc.returncode == 2 and phrase in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert time.time() - started < 60 and not (tmp_path / "out").exists()


def test_messages_say_what_is_wrong(scratch_export, capsys, tmp_path, tiny_open_clip_config, monkeypatch):
    tiny = f"open_clip:{tiny_open_clip_config}"
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "o", "--student", tiny, "--weights", noise)
    _one_line_error(code, err, "not a PyTorch or safetensors checkpoint")
    assert "run code" not in err and "pickled" not in err
    _one_line_error(*_cli(capsys, "compile", scratch_export, "--target", "aihub:")[::2], "names no SoC")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "none.ini"))
    code, _, err = _cli(capsys, "compile", scratch_export, "--target", "aihub:SM8650")
    assert code == 7 and "[api]" in err, err
    _one_line_error(
        *_cli(capsys, "quantize", scratch_export, "--num-calib", "0")[::2], "--num-calib must be a positive"
    )


def test_a_read_only_filesystem_is_called_that(capsys, tmp_path, tiny_open_clip_config):
    mount = tmp_path / "ro"
    mount.mkdir()
    with tmpfs(mount, "ro,size=1m"):
        code, _, err = _cli(
            capsys, "export", "--out", mount / "out", "--student", f"open_clip:{tiny_open_clip_config}", "--random-init"
        )
        _one_line_error(code, err, "read-only filesystem")
        assert "permission denied" not in err


@pytest.mark.parametrize("text", ["[api]\napi_token = x\n[api", "no sections at all\n", "\xff\xfe garbage"])
def test_a_malformed_client_ini_is_one_line(scratch_export, capsys, tmp_path, monkeypatch, text):
    ini = tmp_path / "client.ini"
    ini.write_bytes(text.encode("latin-1"))
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    code, _, err = _cli(capsys, "compile", scratch_export, "--target", "aihub:SM8650")
    assert code == 7 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "client.ini" in err or "API token" in err


@pytest.mark.parametrize(
    "config, phrase",
    [
        ([1, 2, 3], "not an open_clip model config"),
        (
            {
                "embed_dim": 32,
                "vision_cfg": {"image_size": 32, "layers": 2, "width": "wide", "patch_size": 8},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
            },
            "vision_cfg.width must be a positive whole number",
        ),
        (
            {
                "embed_dim": 32,
                "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": -64, "heads": 2, "layers": 2},
            },
            "text_cfg.width must be a positive whole number",
        ),
        ({"vision_cfg": "x", "text_cfg": {}}, "not an open_clip model config"),
    ],
)
def test_malformed_open_clip_configs_are_one_line(capsys, tmp_path, config, phrase):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "o", "--student", f"open_clip:{path}", "--random-init")
    _one_line_error(code, err, phrase)


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"model_type": "clip", "text_config": {"hidden_size": -4}}'])
def test_a_malformed_hf_config_is_one_line(capsys, tmp_path, text):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    code, _, err = _cli(capsys, "export", "--out", tmp_path / "o", "--student", f"hf:{folder}", "--random-init")
    _one_line_error(code, err, "config.json")


def test_index_embeds_with_fp32_as_its_help_says(scratch_export, capsys):
    def edit(m):
        quantized = next(
            a for a in m["artifacts"] if a["encoder"] == "image" and a["precision"] != "fp32" and a["format"] == "onnx"
        )
        m["deployment"]["image_encoder"] = quantized["path"]

    _edit_manifest(scratch_export, edit)
    assert _cli(capsys, "index", scratch_export)[0] == 0
    meta = json.loads((scratch_export / INDEX_DIR / "index.json").read_text())
    assert meta["image_encoder"]["path"] == "image_encoder.onnx"
    assert (
        "fp32"
        in subprocess.run(
            [sys.executable, "-m", "mcad_export", "index", "--help"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        ).stdout
    )


def test_short_query_variants_report_a_true_size_ratio(embedded_run):
    manifest = json.loads((embedded_run[0] / MANIFEST).read_text())
    dyn = [a for a in manifest["artifacts"] if a["path"].startswith("text_encoder.dyn.") and a["precision"] != "fp32"]
    assert dyn and all(a["size_ratio_vs_fp32"] >= 1.5 for a in dyn), [(a["path"], a["size_ratio_vs_fp32"]) for a in dyn]


def test_an_unknown_runtime_fails_verify_instead_of_being_skipped(scratch_export, capsys):
    def edit(m):
        m["artifacts"][0]["runtime"] = "onnxruntime-gpu-nightly"

    _edit_manifest(scratch_export, edit)
    _one_line_error(
        *_cli(capsys, "verify", scratch_export)[::2], "'onnxruntime-gpu-nightly'", "which mcad-export does not know"
    )


def test_no_auto_says_kept_not_rejected(scratch_export, capsys, monkeypatch):
    import mcad_export.quantize as quantize_stage

    manifest = json.loads((scratch_export / MANIFEST).read_text())
    record = dict(next(a for a in manifest["artifacts"] if a["path"] == "text_encoder.w8a8.onnx"))
    step = {"kept_float": [], "misses": ["top-10 overlap 0.900 < 0.95"], "passed": False}
    record.update(
        size_ratio_vs_fp32=3.9,
        recipe={"kept_float": []},
        layer_damage_top=[],
        tuning={"passed": False, "auto": False, "steps": [step]},
    )
    monkeypatch.setattr(quantize_stage, "quantize_artifacts", lambda *a, **k: [record])
    code, out, err = _cli(capsys, "quantize", scratch_export, "--no-auto")
    assert code == 0, err
    assert "rejected" not in out and "kept text_encoder.w8a8.onnx although it misses the tuning gate" in out
    assert "miss, kept" in out
    record["tuning"]["auto"] = True
    code, out, err = _cli(capsys, "quantize", scratch_export)
    assert "rejected text_encoder.w8a8.onnx (not kept)" in out
