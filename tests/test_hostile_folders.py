"""Hostile and careless input, part one: tampered, traversing, broken or oversized inputs over copies of a
finished run. Every case: one `error:` line and exit 2 (or results), never a traceback, nothing half-written."""

import hashlib
import json
import os
import random
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest

from mcad_export.cli import main
from mcad_export.contract import INDEX_DIR, MANIFEST

from .conftest import run_cli, tmpfs


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def _one_line_error(code, err, *phrases):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _deployed_text(folder: Path) -> dict:
    manifest = json.loads((folder / MANIFEST).read_text())
    wanted = manifest["deployment"]["text_encoder"]
    return next(a for a in manifest["artifacts"] if wanted in (a["path"], a["name"]))


@pytest.mark.parametrize("evil", ["../../etc/passwd", "/etc/passwd"])
@pytest.mark.parametrize("command", ["search", "verify", "bundle"])
def test_manifest_paths_outside_the_export_are_refused(scratch_export, capsys, tmp_path, evil, command):
    target = _deployed_text(scratch_export)["path"]

    def edit(m):
        for a in m["artifacts"]:
            if a["path"] == target:
                a["path"] = evil
        m["deployment"]["text_encoder"] = evil

    _edit_manifest(scratch_export, edit)
    args = {
        "search": ["search", scratch_export, "a red circle"],
        "verify": ["verify", scratch_export],
        "bundle": ["bundle", scratch_export, "--app", tmp_path / "app"],
    }[command]
    (tmp_path / "app" / "app" / "src" / "main").mkdir(parents=True)
    _one_line_error(*_cli(capsys, *args)[::2], "not a plain relative path", "re-export")
    assert not (tmp_path / "app" / "app" / "src" / "main" / "assets").exists()


def test_a_symlink_out_of_the_export_is_refused(scratch_export, capsys, tmp_path):
    target = scratch_export / _deployed_text(scratch_export)["path"]
    outside = tmp_path / "outside.onnx"
    shutil.copy(target, outside)
    target.unlink()
    target.symlink_to(outside)
    _one_line_error(*_cli(capsys, "search", scratch_export, "a red circle")[::2], "outside")


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_model_or_index_file_is_refused(scratch_export, capsys):
    code, out, err = _cli(capsys, "search", scratch_export, "a red circle")
    assert code == 0, err
    model = scratch_export / _deployed_text(scratch_export)["path"]
    original = model.read_bytes()
    _flip_byte(model)
    _one_line_error(
        *_cli(capsys, "search", scratch_export, "a red circle")[::2], model.name, "does not match the sha256"
    )
    model.write_bytes(original)  # restored bytes (new mtime/ctime: hashed again) pass again
    assert _cli(capsys, "search", scratch_export, "a red circle")[0] == 0
    _flip_byte(scratch_export / INDEX_DIR / "embeddings.f32.npy")
    _one_line_error(
        *_cli(capsys, "search", scratch_export, "a red circle")[::2], "embeddings.f32.npy", "does not match the sha256"
    )


def test_tampered_file_with_restored_mtime_is_still_caught(scratch_export, capsys):
    """The digest cache keys on ctime too, which `touch -d` cannot set back."""
    assert _cli(capsys, "search", scratch_export, "a red circle")[0] == 0  # digest cached
    model = scratch_export / _deployed_text(scratch_export)["path"]
    st = model.stat()
    _flip_byte(model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    _one_line_error(*_cli(capsys, "search", scratch_export, "a red circle")[::2], "does not match the sha256")


def test_markup_in_queries_and_file_names_is_printed_not_interpreted(scratch_export, capsys, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["photo [1].jpg", "[bold red]x.png", "[link=file:]y [i].png"]
    for i, name in enumerate(names):
        shutil.copy(scratch_export / "gallery" / f"heldout_{i:05d}.png", photos / name)
    code, out, err = _cli(capsys, "index", scratch_export, "--images", photos)
    assert code == 0, err
    code, out, err = _cli(capsys, "search", scratch_export, "a [/] red [bold]circle[/bold]", "-k", "3")
    assert code == 0, err
    assert "[/]" in out and "a [/] red [bold]circle[/bold]" in out
    for name in names:
        assert name in out, out


def test_missing_index_file_invalid_manifest_and_unknown_format(scratch_export, capsys):
    (scratch_export / INDEX_DIR / "embeddings.f32.npy").unlink()
    _one_line_error(*_cli(capsys, "search", scratch_export, "x")[::2], "embeddings.f32.npy", "mcad-export index")
    (scratch_export / MANIFEST).write_text('{"format": "mcad-export/1", "artifacts": [')
    _one_line_error(
        *_cli(capsys, "search", scratch_export, "x")[::2], "manifest.json is not valid JSON", "mcad-export export"
    )
    (scratch_export / MANIFEST).write_text('{"format": "mcad-export/99", "artifacts": []}')
    _one_line_error(*_cli(capsys, "verify", scratch_export)[::2], "'mcad-export/99'", "mcad-export export")
    (scratch_export / MANIFEST).write_text("[1, 2, 3]")
    _one_line_error(*_cli(capsys, "quantize", scratch_export)[::2], "format", "re-export")


def test_broken_index_json_is_one_line(scratch_export, capsys):
    (scratch_export / INDEX_DIR / "index.json").write_text("{not json")
    _one_line_error(*_cli(capsys, "search", scratch_export, "x")[::2], "index.json is not valid JSON")


def test_export_onto_a_mount_point(tmp_path, tiny_open_clip_config):
    mount = tmp_path / "mnt"
    mount.mkdir()
    with tmpfs(mount, "size=64m"):
        result = run_cli(
            "export",
            "--out",
            mount,
            "--student",
            f"open_clip:{tiny_open_clip_config}",
            "--random-init",
            "--no-tflite",
            "--samples",
            "16",
        )
        assert result.returncode == 0, result.stderr
        assert (mount / MANIFEST).is_file() and (mount / "image_encoder.onnx").is_file()
        assert not [p.name for p in mount.iterdir() if p.name.startswith(".")]  # no staging or lock left
        assert not [p.name for p in tmp_path.iterdir() if p.name != "mnt"]  # nothing beside the mount


def test_bench_sizes_are_checked_before_anything_is_built(scratch_export, capsys):
    _one_line_error(
        *_cli(capsys, "bench", scratch_export, "--gallery-size", "50000000", "--no-baseline")[::2],
        "50,000,000-image gallery",
        "GiB of memory",
        "smaller --gallery-size",
    )
    _one_line_error(
        *_cli(capsys, "bench", scratch_export, "--gallery-size", "-5")[::2],
        "--gallery-size must be a number of images",
        "-5",
    )
    _one_line_error(*_cli(capsys, "bench", scratch_export, "--threads", "0")[::2], "--threads must be positive")
    assert not (scratch_export / ".mcad-staging").exists()


def _bomb(path: Path) -> None:
    from PIL import Image

    Image.new("1", (20000, 20000)).save(path)  # 400 M pixels declared, a few KB on disk


def test_calibration_images_follow_the_index_policy(scratch_export, tmp_path):
    from mcad_export.manifest import read_manifest
    from mcad_export.quantize.calibration import calibration_inputs

    photos = tmp_path / "calib"
    photos.mkdir()
    for i in range(3):
        shutil.copy(scratch_export / "gallery" / f"heldout_{i:05d}.png", photos / f"{i + 1}.png")
    _bomb(photos / "00_bomb.png")  # sorted first, so calibration meets them before it has enough images
    (photos / "01_broken.webp").write_bytes(b"RIFF....WEBP junk")
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\na blue square\na green star\n")
    calib = calibration_inputs(
        scratch_export, read_manifest(scratch_export), images_dir=photos, captions_file=captions, num_calib=3
    )
    assert calib.pixels.shape[0] == 3 and calib.skipped_images == 2
    # The same folder through `index`: the same two files skipped, with the reasons.
    assert main(["index", str(scratch_export), "--images", str(photos)]) == 0
    meta = json.loads((scratch_export / INDEX_DIR / "index.json").read_text())
    assert meta["skipped"] == 2 and {Path(s["path"]).name for s in meta["skipped_files"]} == {
        "00_bomb.png",
        "01_broken.webp",
    }
    assert any("too large" in s["reason"] for s in meta["skipped_files"])


def test_non_finite_weights_are_refused_at_load(capsys, tmp_path, tiny_open_clip_config):
    import open_clip
    import torch

    cfg = json.loads(tiny_open_clip_config.read_text())
    state = open_clip.model.CLIP(**cfg).state_dict()
    state["token_embedding.weight"][40000] = float("nan")  # a row no parity caption touches
    weights = tmp_path / "nan.pt"
    torch.save(state, weights)
    out = tmp_path / "out"
    code, _, err = _cli(
        capsys,
        "export",
        "--out",
        out,
        "--student",
        f"open_clip:{tiny_open_clip_config}",
        "--weights",
        weights,
        "--no-tflite",
    )
    _one_line_error(code, err, "token_embedding.weight", "non-finite")
    assert not out.exists()


def _rewrite_index_embeddings(folder: Path, edit) -> None:
    """Changes the index's float rows and re-signs index.json, as a careless tool (not a bit flip) would."""
    index = folder / INDEX_DIR
    rows = np.load(index / "embeddings.f32.npy")
    rows = edit(rows)
    np.save(index / "embeddings.f32.npy", rows)
    meta = json.loads((index / "index.json").read_text())
    data = (index / "embeddings.f32.npy").read_bytes()
    meta["digests"]["embeddings.f32.npy"] = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    (index / "index.json").write_text(json.dumps(meta))


def test_non_finite_index_rows_are_refused_at_query_time(scratch_export, capsys):
    def poison(rows):
        rows[7] = np.nan
        return rows

    _rewrite_index_embeddings(scratch_export, poison)
    _one_line_error(
        *_cli(capsys, "search", scratch_export, "a red circle")[::2], "row 7 is not finite", "mcad-export index"
    )


def test_non_finite_image_embeddings_are_skipped_when_indexing(scratch_export, tmp_path, monkeypatch):
    from mcad_export.runtime import gallery

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        shutil.copy(scratch_export / "gallery" / f"heldout_{i:05d}.png", photos / f"{i}.png")
    real_open = gallery.open_encoder

    def open_broken(*args, **kwargs):
        run = real_open(*args, **kwargs)

        def embed(x):
            out = run(x)
            out[1] = np.nan  # the second image of each batch
            return out

        return embed

    monkeypatch.setattr(gallery, "open_encoder", open_broken)
    meta = gallery.build_gallery_index(scratch_export, photos, batch=4)
    assert meta["count"] == 3 and meta["skipped"] == 1
    assert "non-finite" in meta["skipped_files"][0]["reason"] and meta["skipped_files"][0]["path"].endswith("1.png")


def _fuzz_texts(seed: int = 0, count: int = 40) -> list[str]:
    rng = random.Random(seed)
    pool = (
        "[/]",
        "[bold]",
        "[",
        "]",
        "\\",
        "\x00",
        "\x1b[31m",
        "\n",
        "\r",
        "\t",
        "\u200b",
        "\ufeff",
        "%s",
        "{}",
        "\U0001f600",
        "\u0301",
        "&amp;",
        "<|endoftext|>",
        "<|startoftext|>",
        "\ud800",
    )
    texts = [
        "[/]",
        "[bold red]x[/]",
        "\x00\x01\x02",
        "x" * 10_000,
        "a " * 5000,
        "\U0001f600" * 300,
        "<|endoftext|>" * 50,
        " a ",
        "%00 %0A",
        "\ud83d",
    ]
    while len(texts) < count:
        parts = [
            rng.choice(pool) if rng.random() < 0.4 else chr(rng.randint(32, 0x2FFFF)) for _ in range(rng.randint(1, 60))
        ]
        texts.append("".join(parts))
    return texts


def test_fuzzed_queries_give_results_or_one_line(embedded_run, capsys):
    from rich.console import Console

    from mcad_export.errors import McadError
    from mcad_export.render import search as render_search
    from mcad_export.runtime.search import TextSearch

    search = TextSearch(embedded_run[0])
    texts, answered = _fuzz_texts(), 0
    for text in texts:
        for k in (1, 5, 10_000):
            try:
                hits, times = search.timed_search(text, k)
            except McadError as e:
                assert "\n" not in str(e)
                continue
            answered += 1
            assert len(hits) == min(k, len(search.index)) and all(np.isfinite(h.score) for h in hits)
            console = Console(file=StringIO(), width=160)
            render_search(console, text, search, hits, times)
            assert console.file.getvalue().count("\n") >= len(hits)
    # Every fuzzed query that is valid text must be answered (25 of these 40: the others hold lone surrogates or
    # only whitespace); a search that refused them all would pass the loop vacuously.
    valid = sum(1 for text in texts if text.strip() and not any(0xD800 <= ord(c) <= 0xDFFF for c in text))
    assert valid >= 20 and answered == 3 * valid, f"{answered} of {3 * valid} valid fuzzed searches answered"
    for k in ("0", "-1"):
        _one_line_error(
            *_cli(capsys, "search", embedded_run[0], "a red circle", "-k", k)[::2], "-k must be a positive number"
        )
    for text in ("", "   ", "\t\n"):
        _one_line_error(*_cli(capsys, "search", embedded_run[0], text)[::2], "the query is empty")
    code, out, err = _cli(capsys, "search", embedded_run[0], "a red circle", "-k", "100000")
    assert code == 0 and out.count(".png") == 1000, err
