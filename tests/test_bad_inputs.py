"""Bad input: one clear line, a non-zero exit, and no partial artifacts."""

import json
import os
import pickle
import subprocess
import sys

import open_clip
import pytest
import torch

from mcad_export.cli import main

from .conftest import REPO, run_cli


class _RunsCode:
    """A pickle payload that would create a file if anything unpickled it with full pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _export(capsys, tmp_path, *extra):
    out = tmp_path / "out"
    code = main(["export", "--out", str(out), *map(str, extra)])
    err = capsys.readouterr().err.strip()
    return code, err, out


def _assert_clean_failure(code, err, out, *phrases):
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    for phrase in phrases:
        assert phrase in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


@pytest.fixture()
def tiny(tiny_open_clip_config):
    return f"open_clip:{tiny_open_clip_config}"


def test_missing_weights(capsys, tmp_path, tiny):
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", tiny, "--weights", tmp_path / "nope.pt"),
        "weights file not found",
        "nope.pt",
    )


def test_weights_is_directory(capsys, tmp_path, tiny):
    _assert_clean_failure(*_export(capsys, tmp_path, "--student", tiny, "--weights", tmp_path), "is a directory")


def test_not_a_checkpoint(capsys, tmp_path, tiny):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights\n")
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", tiny, "--weights", bogus), "not a PyTorch or safetensors checkpoint"
    )


def test_corrupt_safetensors(capsys, tmp_path, tiny):
    bogus = tmp_path / "w.safetensors"
    bogus.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", tiny, "--weights", bogus), "not a valid safetensors file"
    )


@pytest.mark.parametrize("wrap", [False, True])
def test_pickle_with_code_is_never_executed(capsys, tmp_path, tiny, wrap):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"state_dict": {"w": _RunsCode(marker)}} if wrap else _RunsCode(marker)
    torch.save(payload, evil)
    # Sanity: plain pickle would run it (so the test can fail).
    assert pickle.loads(pickle.dumps(_RunsCode(tmp_path / "control"))) and (tmp_path / "control").exists()
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", tiny, "--weights", evil), "refusing to load", "safetensors"
    )
    assert not marker.exists()


def test_weights_that_do_not_fit(capsys, tmp_path, tiny, tiny_open_clip_config):
    cfg = json.loads(tiny_open_clip_config.read_text())
    other = dict(cfg, text_cfg=dict(cfg["text_cfg"], width=32))
    state = open_clip.model.CLIP(**other).state_dict()
    state.pop("visual.proj")
    state["extra.thing"] = torch.zeros(1)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    code, err, out = _export(capsys, tmp_path, "--student", tiny, "--weights", path)
    _assert_clean_failure(
        code,
        err,
        out,
        "weights don't fit",
        "1 missing keys (visual.proj)",
        "1 unexpected keys (extra.thing)",
        "tensors with the wrong shape",
    )


def test_unknown_architecture_suggests(capsys, tmp_path):
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", "open_clip:ViT-B-33", "--random-init"),
        "unknown open_clip architecture",
        "ViT-B-32",
    )


def test_unknown_family_suggests(capsys, tmp_path):
    _assert_clean_failure(
        *_export(capsys, tmp_path, "--student", "openclip:ViT-B-32", "--random-init"), "unknown student", "open_clip"
    )


def test_open_clip_without_weights(capsys, tmp_path):
    _assert_clean_failure(*_export(capsys, tmp_path, "--student", "open_clip:ViT-B-32"), "needs --weights")


def test_hf_folder_without_config(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_clean_failure(*_export(capsys, tmp_path, "--student", f"hf:{tmp_path / 'empty'}"), "no config.json")


def test_output_under_a_file(capsys, tmp_path, tiny):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["export", "--out", str(blocker / "sub"), "--student", tiny, "--random-init"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "is a file" in err


def test_unwritable_output_dir(tmp_path, tiny):
    # Root ignores directory permissions through CAP_DAC_OVERRIDE: as root (CI) the command runs with that
    # capability (and CAP_DAC_READ_SEARCH) dropped from its bounding set, so the folder's mode applies to it too.
    def without_dac_override():
        if os.geteuid() == 0:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
                if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    args = ["export", "--out", locked / "out", "--student", tiny, "--random-init"]
    proc = subprocess.run(
        [sys.executable, "-m", "mcad_export", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        preexec_fn=without_dac_override,
        timeout=300,
    )
    assert proc.returncode == 2 and "permission denied" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (locked / "out").exists()


def test_cli_process_exit_code_and_single_line(tmp_path):
    proc = run_cli("export", "--out", tmp_path / "out", "--student", "open_clip:ViT-B-33", "--random-init")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().startswith("error: unknown open_clip architecture")
        and len(proc.stderr.strip().splitlines()) == 1
    )
    assert "Traceback" not in proc.stderr
