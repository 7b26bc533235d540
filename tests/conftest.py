import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

E2E_FIXTURES = {"embedded_run", "scratch_export"}
SLOW_MODULES = {"test_retrain", "test_minilm_student", "test_export_dual", "test_export_hf", "test_pipeline"}
QNN_MODULES = {"test_compile"}


# Every registry dispatch of this session, CLI children included, is logged here (mcad_export/usage.py) and the
# registry-coverage tests (tests/test_registries.py), ordered last, check each registered entry was really called.
if "MCAD_REGISTRY_LOG" not in os.environ:
    import tempfile

    os.environ["MCAD_REGISTRY_LOG"] = os.path.join(tempfile.mkdtemp(prefix="mcad-registry-"), "calls.log")
COVERAGE_TESTS = (
    "test_every_student_loader",
    "test_every_compile_backend",
    "test_every_precision",
    "test_every_verify",
)


def pytest_collection_modifyitems(items):
    """Markers from what each test uses, so a new test is sorted into its lane without anyone remembering to; the
    registry-coverage tests go last, after every test that calls a registry."""
    items.sort(key=lambda item: item.name.startswith(COVERAGE_TESTS))
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module in QNN_MODULES or "qnn" in item.name.lower():
            item.add_marker(pytest.mark.qnn)
        source = _source(item).replace("--no-tflite", "")
        if "tflite" in source or "litert" in source:
            item.add_marker(pytest.mark.tflite)


def _source(item) -> str:
    import inspect

    try:
        return inspect.getsource(item.function).lower()
    except (OSError, TypeError, AttributeError):
        return item.name.lower()


IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str):
    """A test that needs what this machine lacks (root, mount): skipped on a developer's machine, but a failure in
    CI, which runs as root and must run every test (a skip there would let the test pass vacuously)."""
    (pytest.fail if IN_CI else pytest.skip)(reason)


@contextlib.contextmanager
def tmpfs(path, options: str):
    """A tmpfs mounted at `path` for the block (root only; see `unavailable`)."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def cli(capsys, *args) -> tuple[int, str, str]:
    """`mcad-export ARGS` in this process (as main() runs it): exit code, stdout, stderr stripped."""
    from mcad_export.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def tiny_options(out, config, images, **changes):
    """`run` options for a tiny random-init student: export without TFLite, dynamic INT8, a quick bench."""
    from mcad_export.options import (
        BenchOptions,
        ExportOptions,
        IndexOptions,
        PipelineOptions,
        QuantizeOptions,
        StudentOptions,
    )

    options = PipelineOptions(
        out=out,
        student=StudentOptions(f"open_clip:{config}", random_init=True),
        export=ExportOptions(tflite=False),
        quantize=QuantizeOptions(precisions=("dynamic",)),
        index=IndexOptions(images=images),
        bench=BenchOptions(threads=(1,), gallery_size=0, sweep_sizes=(), baseline=False, quick=True),
    )
    for key, value in changes.items():
        setattr(options, key, value)
    return options


def one_line_error(proc, pattern: str) -> None:
    """Bad input's contract: exit 2 and exactly one `error:` line, matching `pattern` (a regex)."""
    import re

    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), proc.stderr[-2000:]


def run_cli(*args, cwd=None, timeout=900, env=None):
    """Runs `python -m mcad_export ...` in a fresh process, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "mcad_export", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory):
    """`mcad-export run` on the embedded student, once per session; tests inspect its output."""
    out = tmp_path_factory.mktemp("run") / "mcad-out"
    # --quick: fewer latency repeats; everything else (100k gallery, sweep, baseline) as a user gets it.
    proc = run_cli("run", "--out", out, "--quick")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out, proc


@pytest.fixture(scope="session")
def tiny_open_clip_config(tmp_path_factory):
    """A small custom open_clip config (ViT + causal text transformer) written outside the repo."""
    import json

    path = tmp_path_factory.mktemp("cfg") / "tiny-vit.json"
    path.write_text(
        json.dumps(
            {
                "embed_dim": 32,
                "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
            }
        )
    )
    return path


@pytest.fixture()
def scratch_export(embedded_run, tmp_path):
    """A private copy of the embedded run's folder, for tests that rewrite its index or reports."""
    import shutil

    out = tmp_path / "export"
    shutil.copytree(embedded_run[0], out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_open_clip_config):
    """A finished `run` of a tiny random-init student (export ... report, dynamic INT8, a 12-image index), its
    images folder; plus a stand-in shard, gallery image and compiled file so every owned folder exists. Tests copy it."""
    import shutil

    import numpy as np
    from PIL import Image

    from mcad_export import contract
    from mcad_export.pipeline import run_pipeline

    base = tmp_path_factory.mktemp("tiny-run")
    images = base / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / f"{i:02d}.png")
    out = base / "run"
    run_pipeline(tiny_options(out, tiny_open_clip_config, images))
    (out / contract.INDEX_SHARDS_DIR / "job").mkdir(parents=True)
    (out / contract.INDEX_SHARDS_DIR / "job" / "shard-00000.npz").write_bytes(b"shard")
    (out / contract.GALLERY_DIR).mkdir(exist_ok=True)
    shutil.copy(images / "00.png", out / contract.GALLERY_DIR / "heldout_00000.png")
    (out / contract.COMPILED_DIR / "qnn-SM8650").mkdir(parents=True)
    (out / contract.COMPILED_DIR / "qnn-SM8650" / "text_encoder.qnn_ctx.onnx").write_bytes(b"ctx")
    return out, images


@pytest.fixture()
def tiny_copy(tiny_run, tmp_path):
    """A private copy of the tiny run's folder, for tests that edit or plant things in it."""
    import shutil

    out = tmp_path / "x"
    shutil.copytree(tiny_run[0], out)
    return out
