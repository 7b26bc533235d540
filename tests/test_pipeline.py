"""The typed pipeline API: run_pipeline with option dataclasses, resumable runs, per-stage tool logs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mcad_export.errors import InputError
from mcad_export.options import (
    IndexOptions,
    QuantizeOptions,
)
from mcad_export.pipeline import Observer, run_pipeline

from .conftest import REPO, run_cli, tiny_options

ALL = ["export", "short-query", "quantize", "verify", "index", "bench", "report"]


class Recorder(Observer):
    def __init__(self):
        self.events = []

    def finished(self, name, result):
        self.events.append(("finished", name))

    def skipped(self, name, why):
        self.events.append(("skipped", name))


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (40 + i, 56, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


_options = tiny_options


def test_rerun_of_an_unchanged_folder_skips_every_stage(tmp_path, tiny_open_clip_config, images):
    out = tmp_path / "run"
    first_observer = Recorder()
    first = run_pipeline(_options(out, tiny_open_clip_config, images), first_observer)
    assert first.ran == ALL and first.skipped == [] and ("finished", "bench") in first_observer.events
    assert first.bench["budget"]["latency_ms"] == 8.0 and first.index["count"] == 24
    assert {r["path"] for r in first.quantized} >= {"text_encoder.dynamic.onnx", "text_encoder.dyn.dynamic.onnx"}
    state = json.loads((out / "logs" / "pipeline.json").read_text())
    assert list(state["stages"]) == ALL and "text_encoder.dynamic.onnx" in state["stages"]["quantize"]["owns"]

    again = run_pipeline(_options(out, tiny_open_clip_config, images), Recorder())
    assert again.ran == [] and again.skipped == ALL
    assert again.seconds < max(5.0, first.seconds / 4), (again.seconds, first.seconds)
    # A skipped stage's results come from what it left on disk.
    assert again.bench["query_latency_ms"] == first.bench["query_latency_ms"] and again.index["count"] == 24
    assert again.manifest["artifacts"] == json.loads((out / "manifest.json").read_text())["artifacts"]

    forced = run_pipeline(_options(out, tiny_open_clip_config, images, force=("quantize",)))
    assert forced.skipped == ["export", "short-query"] and forced.ran == ALL[2:]

    changed = run_pipeline(_options(out, tiny_open_clip_config, images, quantize=QuantizeOptions(precisions=("w8",))))
    assert changed.skipped == ["export", "short-query"] and changed.ran[0] == "quantize"
    assert any(r["path"] == "text_encoder.w8.onnx" for r in changed.quantized)

    # A file a stage wrote, changed behind its back: that stage and the later ones run again.
    (out / "index" / "paths.txt").write_text("tampered\n")
    tampered = run_pipeline(_options(out, tiny_open_clip_config, images, quantize=QuantizeOptions(precisions=("w8",))))
    assert tampered.skipped == ["export", "short-query", "quantize", "verify"] and tampered.ran[0] == "index"


def test_a_failed_run_resumes_at_the_stage_that_failed(tmp_path, tiny_open_clip_config, images):
    out = tmp_path / "run"
    # No gallery for this student: the index stage fails after four finished stages.
    with pytest.raises(InputError, match="no built-in gallery"):
        run_pipeline(_options(out, tiny_open_clip_config, None, index=IndexOptions()))
    state = json.loads((out / "logs" / "pipeline.json").read_text())
    assert list(state["stages"]) == ["export", "short-query", "quantize", "verify"]
    resumed = run_pipeline(_options(out, tiny_open_clip_config, images))
    assert resumed.skipped == ["export", "short-query", "quantize", "verify"]
    assert resumed.ran == ["index", "bench", "report"]


def test_a_killed_run_resumes_from_its_last_finished_stage(tmp_path, tiny_open_clip_config, images):
    out = tmp_path / "run"
    args = ["run", "--out", out, "--student", f"open_clip:{tiny_open_clip_config}", "--random-init", "--no-tflite"]
    args += ["--precision", "dynamic", "--images", images, "--threads", "1", "--gallery-size", "0"]
    args += ["--sweep-sizes", "0", "--no-baseline"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcad_export", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state_file = out / "logs" / "pipeline.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state_file.is_file() and "index" in json.loads(state_file.read_text() or "{}").get("stages", {}):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-bench: the bench probes die with it
    proc.wait()
    done = list(json.loads(state_file.read_text())["stages"])
    assert done[:5] == ["export", "short-query", "quantize", "verify", "index"] and "report" not in done
    rerun = run_cli(*args, "--quick")
    assert rerun.returncode == 0, rerun.stderr
    skipped = [line.split()[1].rstrip(":") for line in rerun.stdout.splitlines() if line.startswith("skipped ")]
    assert skipped == done and "ran: bench, report" in rerun.stdout


def test_force_names_a_stage_or_fails_with_one_line(tmp_path):
    proc = run_cli("run", "--out", tmp_path / "x", "--force", "quantise")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--force quantise: not a stage; use one of export, short-query, quantize" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.e2e
def test_tool_output_goes_to_stage_logs_not_the_console(embedded_run):
    out, proc = embedded_run
    logs = out / "logs"
    assert {"export.log", "pipeline.json"} <= {p.name for p in logs.iterdir()}
    assert all(p.stat().st_size > 0 for p in logs.iterdir()), "a stage whose tools said nothing leaves no log"
    # litert-torch's progress lines (one per conversion step) are in the export stage's log, not between our tables.
    export_log = (logs / "export.log").read_text()
    assert export_log.count("LiteRT-Torch Convert") >= 4
    assert "LiteRT-Torch" not in proc.stdout and "[START]" not in proc.stdout + proc.stderr
    assert "done export" in proc.stdout and "fidelity vs PyTorch fp32" in proc.stdout
