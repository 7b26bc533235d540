"""Hostile input, part three: links planted in an export (or app) folder never make a stage read, write or delete
outside it (confined.py). A symlink, and a hard link where the name is a file, is planted at every path contract.py
names and at every stage-owned folder of a finished run; every stage runs; nothing outside a sentinel folder may
change, and every stage refuses with one line naming the link."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from mcad_export import confined, contract
from mcad_export.cli import main
from mcad_export.errors import UnsafeFolderError

# contract.py's string constants that are no path (tensor names, format tags).
NOT_PATHS = {
    "MANIFEST_FORMAT",
    "INDEX_FORMAT",
    "IMAGE_INPUT",
    "IMAGE_OUTPUT",
    "TEXT_INPUT",
    "TEXT_MASK_INPUT",
    "TEXT_EMBEDS_INPUT",
    "TEXT_OUTPUT",
}


def contract_paths() -> dict[str, str]:
    """Every path contract.py names, relative to an export's root (tokenizer and index file names live in their
    folders). A new string constant must be placed here or in NOT_PATHS, so none is forgotten."""
    paths = {}
    for name, value in vars(contract).items():
        if not name.isupper() or not isinstance(value, str) or name in NOT_PATHS:
            continue
        if name.startswith("TOKENIZER_") and name != "TOKENIZER_DIR":
            value = f"{contract.TOKENIZER_DIR}/{value}"
        elif name.startswith("INDEX_") and name not in ("INDEX_DIR", "INDEX_SHARDS_DIR"):
            value = f"{contract.INDEX_DIR}/{value}"
        elif name.startswith("HOST_TOKEN_"):  # a compiled target's host token table
            value = f"{contract.COMPILED_DIR}/qnn-SM8650/{value}"
        paths[name] = value
    paths["ONNX variant"] = "image_encoder.dynamic.onnx"
    paths["length bucket"] = contract.length_bucket_onnx(16)
    return paths


def test_every_contract_path_is_owned():
    for name, rel in contract_paths().items():
        top = rel.split("/")[0]
        assert (
            top in contract.OWNED_FOLDERS or top in contract.OWNED_FILES or top.startswith(contract.OWNED_PREFIXES)
        ), f"{name} = {rel!r}: add it to contract.OWNED_*"


def _state(folder: Path) -> dict:
    """Every entry below `folder`: kind, bytes' digest, mtime (a deleted, added or rewritten file shows)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(folder))] = (st.st_mode, digest, st.st_mtime_ns)
    return out


def _stage_commands(x: Path, images: Path, app: Path, config: Path) -> list[list]:
    return [
        ["export", "--out", x, "--student", f"open_clip:{config}", "--random-init", "--no-tflite", "--samples", "8"],
        ["short-query", x],
        ["quantize", x, "--precision", "dynamic", "--no-auto"],
        ["verify", x],
        ["index", x, "--images", images],
        ["bench", x, "--quick", "--no-baseline"],
        ["report", x],
        ["bundle", x, "--app", app],
        ["apk", x, "--app", app],
        ["search", x, "a red circle"],
        ["run", "--out", x, "--student", f"open_clip:{config}", "--random-init", "--no-tflite", "--force", "report"],
    ]


def _is_folder(name: str, rel: str) -> bool:
    return name.endswith("_DIR") or rel in contract.OWNED_FOLDERS


def _plant(x: Path, rel: str, outside: Path, kind: str, folder: bool) -> Path:
    """Moves what `x/rel` holds (or a stand-in) to `outside` and leaves a link to it in its place."""
    place = x / rel
    victim = outside / rel.replace("/", "__")
    if os.path.lexists(place):
        shutil.move(place, victim)
    elif folder:
        victim.mkdir()
        (victim / "precious.txt").write_text("outside")
    else:
        victim.write_text("outside victim")
    if victim.is_dir():
        (victim / "old-subfolder").mkdir(exist_ok=True)
        os.utime(victim / "old-subfolder", (0, 0))  # looks like stale staging debris
    place.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        place.symlink_to(victim, target_is_directory=victim.is_dir())
    else:
        os.link(victim, place)
    return place


def _cases():
    for name, rel in sorted(contract_paths().items()):
        folder = _is_folder(name, rel)
        yield pytest.param(rel, "symlink", folder, id=f"{name}-symlink")
        if not folder:
            yield pytest.param(rel, "hardlink", folder, id=f"{name}-hardlink")


def _run(capsys, args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.mark.parametrize("rel,kind,folder", list(_cases()))
def test_a_link_at_an_owned_name_is_refused_by_every_stage(
    tiny_run, tmp_path, capsys, rel, kind, folder, tiny_open_clip_config
):
    run, images = tiny_run
    x = tmp_path / "x"
    shutil.copytree(run, x, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    if kind == "hardlink" and not os.path.lexists(x / rel):
        (x / rel).parent.mkdir(parents=True, exist_ok=True)
        (x / rel).write_text("ours")
    place = _plant(x, rel, outside, kind, folder)
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    before = _state(outside)
    for args in _stage_commands(x, images, app, tiny_open_clip_config):
        code, err = _run(capsys, args)
        assert _state(outside) == before, f"{args[0]} changed files outside the export"
        assert code == 2, f"{args[0]}: {err}"
        assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
        linked = "symbolic link" if kind == "symlink" else "hard-linked"
        assert linked in err and str(place) in err, err
    assert not (app / contract_assets()).exists()


def contract_assets() -> Path:
    from mcad_export.bundle import ASSETS

    return ASSETS


# -- the primitives alone: with the audit switched off, a planted link still never leads a write out ----------


@pytest.mark.parametrize(
    "rel,args",
    [
        (contract.STAGING_DIR, ["index", "{x}", "--images", "{images}"]),
        (contract.LOCK_FILE, ["report", "{x}"]),
        (contract.REPORTS_DIR, ["report", "{x}"]),
        (
            contract.LOGS_DIR,
            [
                "run",
                "--out",
                "{x}",
                "--student",
                "open_clip:{config}",
                "--random-init",
                "--no-tflite",
                "--force",
                "report",
            ],
        ),
        (contract.INDEX_DIR, ["index", "{x}", "--images", "{images}"]),
    ],
    ids=["staging", "lock", "reports", "logs", "index"],
)
def test_without_the_audit_the_write_primitives_still_refuse_links(
    tiny_run, tmp_path, capsys, monkeypatch, rel, args, tiny_open_clip_config
):
    run, images = tiny_run
    x = tmp_path / "x"
    shutil.copytree(run, x, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    _plant(x, rel, outside, "symlink", rel != contract.LOCK_FILE)
    before = _state(outside)
    monkeypatch.setattr(confined, "audit", lambda root: None)
    code, err = _run(capsys, [a.format(x=x, images=images, config=tiny_open_clip_config) for a in args])
    assert _state(outside) == before
    assert code == 2 and "symbolic link" in err and len(err.splitlines()) == 1, err


def test_a_hard_linked_lock_is_never_truncated(tmp_path):
    from mcad_export.atomic import folder_lock

    x, victim = tmp_path / "x", tmp_path / "victim.txt"
    x.mkdir()
    victim.write_text("precious")
    os.link(victim, x / contract.LOCK_FILE)
    with pytest.raises(UnsafeFolderError, match="hard-linked"), folder_lock(x, "report"):
        pass
    assert victim.read_text() == "precious"


@pytest.fixture()
def bundled(tiny_copy, tmp_path, capsys):
    """A copy of the tiny run, bundled once into an empty app folder: (export, app)."""
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    assert _run(capsys, ["bundle", tiny_copy, "--app", app])[0] == 0
    return tiny_copy, app


def test_bundle_deletes_only_files_it_wrote_with_their_recorded_bytes(bundled, capsys):
    from mcad_export.bundle import ASSETS, BUNDLE_MANIFEST

    x, app = bundled
    assets = app / ASSETS
    document = json.loads((assets / BUNDLE_MANIFEST).read_text())
    # A previous bundle.json that lists a file the user has since changed, and one it never wrote.
    changed = assets / "thumbs" / "000000.jpg"
    changed.write_bytes(b"the user's own edit")
    (assets / "notes.txt").write_text("mine")
    document["files"] += [
        {"path": "thumbs/999999.jpg", "sha256": "0" * 64, "size_bytes": 1},
        {"path": "notes.txt", "sha256": "0" * 64, "size_bytes": 4},
    ]
    (assets / "thumbs" / "999999.jpg").write_bytes(b"x")
    (assets / BUNDLE_MANIFEST).write_text(json.dumps(document))
    code, err = _run(capsys, ["bundle", x, "--app", app])
    assert code == 2 and "was not written by mcad-export" in err, err  # the edited thumbnail is not ours any more
    changed.unlink()
    assert _run(capsys, ["bundle", x, "--app", app])[0] == 0
    # Listed but with other bytes than recorded: left where they are.
    assert (assets / "notes.txt").read_text() == "mine" and (assets / "thumbs" / "999999.jpg").exists()


def test_bundle_refuses_a_link_in_the_app_assets(bundled, tmp_path, capsys):
    from mcad_export.bundle import ASSETS

    x, app = bundled
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(5):
        (outside / f"{i:06d}.jpg").write_bytes(b"outside")
    thumbs = app / ASSETS / "thumbs"
    shutil.rmtree(thumbs)
    thumbs.symlink_to(outside)
    before = _state(outside)
    code, err = _run(capsys, ["bundle", x, "--app", app])
    assert code == 2 and "symbolic link" in err and len(err.splitlines()) == 1, err
    assert _state(outside) == before
