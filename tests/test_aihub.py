"""`aihub:<SoC>` through the real qai-hub client against a loopback server speaking its protocol."""

from __future__ import annotations

import hashlib
import json
import time

import onnx
import pytest

pytest.importorskip("qai_hub")

from mcad_export.compile import compile_targets  # noqa: E402
from mcad_export.compile.aihub import check_reachable, device_profile_checks  # noqa: E402
from mcad_export.errors import CompileError  # noqa: E402

from .aihub_loopback import LoopbackHub  # noqa: E402
from .conftest import run_cli  # noqa: E402

FAST = {"aihub_poll_s": 0.02}


def served_model(export):
    """What the stand-in "compiles" to. `--target_runtime onnx`: the uploaded graph itself (AI Hub hands back an ONNX
    model), so the host can gate it for real. TFLite: the export's own fp32 TFLite image encoder for the image graph;
    a text graph is uploaded starting at `token_embeds`, which no exported TFLite does, so it gets the loopback's
    tagged placeholder (those tests check the transport, not the numbers)."""
    manifest = json.loads((export / "manifest.json").read_text())
    image = next(
        (export / a["path"]).read_bytes()
        for a in manifest["artifacts"]
        if a["format"] == "tflite" and a["precision"] == "fp32" and a["encoder"] == "image"
    )

    def compile_output(source: bytes, runtime: str) -> bytes:
        import onnx

        if runtime == "onnx":
            return source
        first = onnx.load_from_string(source).graph.input[0].name
        return image if first == "pixel_values" else b"\x00\x00\x00\x00TFL3" + source[:64]

    return compile_output


@pytest.fixture
def hub_env(scratch_export, tmp_path, monkeypatch):
    def start(**kwargs):
        hub = LoopbackHub(compile_output=served_model(scratch_export), **kwargs).__enter__()
        monkeypatch.setenv("QAIHUB_CLIENT_INI", hub.write_ini(tmp_path / "client.ini"))
        started.append(hub)
        return hub

    started = []
    yield scratch_export, start
    for hub in started:
        hub.__exit__(None, None, None)


def manifest_of(export) -> dict:
    return json.loads((export / "manifest.json").read_text())


def test_upload_quantize_compile_profile_download(hub_env):
    export, start = hub_env
    hub = start()
    records = compile_targets(
        export, ["aihub:Snapdragon 8 Gen 3"], verify=False, backend_options={**FAST, "aihub_quantize": True}
    )
    # image, text, and the text encoder's 16- and 32-token buckets (static graphs, one per length)
    assert hub.created["model"] == 4 and hub.created["quantize_job"] == 4
    assert hub.created["compile_job"] == 4 and hub.created["inference_job"] == 4
    assert len(hub.datasets) == 4 and all(d["bytes"] for d in hub.datasets.values())  # calibration went up
    assert [(r["name"], r["inputs"][0]["shape"]) for r in records[2:]] == [
        ("text_encoder.len16", [1, 16, 96]),  # token_embeds: the lookup runs on the host
        ("text_encoder.len32", [1, 32, 96]),
    ]
    assert [r["length_bucket"]["tokens"] for r in records[2:]] == [16, 32]
    served = {m["name"]: m["bytes"] for m in hub.models.values() if m.get("bytes") and "source" in m}
    uploaded = [onnx.load_from_string(m["bytes"]) for m in hub.models.values() if "source" not in m]
    for record in records:
        path = export / record["path"]
        assert record["target"] == "aihub:SM8650" and record["runtime"] == "aihub-tflite"
        # The downloaded model is byte for byte what the service served for this encoder's graph.
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
        assert path.read_bytes() in served.values()
    # Every text graph went up starting at the embeddings, without the 49,408-row token table, which stays beside
    # the downloaded models as int8 rows (host_gather.py); the image graph went up whole.
    texts = [m for m in uploaded if m.graph.input[0].name == "token_embeds"]
    assert len(texts) == 3 and len(uploaded) == 4
    assert not any(49408 in list(t.dims) for m in texts for t in m.graph.initializer)
    for record in records[1:]:
        assert record["inputs"][0] == {
            "name": "token_embeds",
            "dtype": "float32",
            "shape": [1, record["inputs"][1]["shape"][1], 96],
        }
        assert (
            record["host_gather"]["rows"] == 49408 and record["host_gather"]["parity"]["fp32_rows_min_cosine"] > 0.99999
        )
        assert record["files"]["token_table"]["path"].endswith("token_table.int8.npy")
        profile = json.loads((path.parent / record["files"]["profile"]["path"].split("/")[-1]).read_text())
        layers = profile["execution_detail"]
        assert len(layers) > 50 and record["device_profile"]["layers"] == {"NPU": len(layers)}
        assert record["device_profile"]["inference_ms"] == 1.85 and record["device_profile"]["peak_memory_mb"] == 41.0
    jobs = manifest_of(export)["aihub_jobs"]["aihub:SM8650"]
    assert set(jobs) == {"image", "text", "text.len16", "text.len32"}
    assert all(j["compile_job"].startswith("j") for j in jobs.values())
    checks = device_profile_checks(manifest_of(export), budget_ms=8, budget_mb=100)
    assert [c["passed"] for c in checks] == [True] * 4
    assert not device_profile_checks(manifest_of(export), budget_ms=1.0, budget_mb=100)[1]["passed"]  # text 1.85 ms


def test_interrupted_run_resumes_without_resubmitting(hub_env):
    export, start = hub_env
    hub = start(polls_before_done=3)

    def ctrl_c(message):
        if "compile job for the text encoder" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST, progress=ctrl_c)
    assert not (export / "compiled" / "aihub-SM8650").exists()
    before = manifest_of(export)["aihub_jobs"]["aihub:SM8650"]
    assert set(before["text"]) == {"key", "model_id", "compile_job"} and "profile_job" in before["image"]
    assert hub.created["model"] == 2 and hub.created["compile_job"] == 2

    records = compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST)
    after = manifest_of(export)["aihub_jobs"]["aihub:SM8650"]
    # Resumed: no second upload or compile of the image and text encoders; only the two buckets are new.
    assert hub.created["model"] == 4 and hub.created["compile_job"] == 4 and hub.created["inference_job"] == 4
    assert after["text"]["compile_job"] == before["text"]["compile_job"]
    assert after["image"]["profile_job"] == before["image"]["profile_job"]
    assert len(records) == 4
    assert all(hashlib.sha256((export / r["path"]).read_bytes()).hexdigest() == r["sha256"] for r in records)
    assert (export / records[0]["path"]).stat().st_size > 1000  # the image encoder's real TFLite


def test_failed_job_shows_reason_and_url_and_leaves_nothing(hub_env):
    export, start = hub_env
    reason = "Compilation failed: Op 'Erf' with float64 input is not supported"
    hub = start(fail_compile={"-image": reason})
    with pytest.raises(CompileError) as failure:
        compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST)
    message = str(failure.value)
    job = next(j for j, pb_ in hub.jobs.items() if pb_.WhichOneof("job") == "compile_job")
    assert reason in message and f"{hub.url}/jobs/{job}/" in message
    assert not (export / "compiled" / "aihub-SM8650").exists()
    entry = manifest_of(export)["aihub_jobs"]["aihub:SM8650"]["image"]
    assert "model_id" in entry and "compile_job" not in entry  # a rerun submits a new compile job


def test_layers_off_the_npu_fail_unless_allowed(hub_env):
    export, start = hub_env
    start(cpu_op_types={"Softmax"})
    with pytest.raises(CompileError, match=r"layer\(s\) of the image encoder ran off the NPU .*CPU \d+"):
        compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST)
    records = compile_targets(export, ["aihub:SM8650"], verify=False, allow_cpu_fallback=True, backend_options=FAST)
    assert all(r["device_profile"]["layers_off_npu"] > 0 and r["device_profile"]["layers"]["CPU"] > 0 for r in records)
    assert all(c["passed"] and c["allowed_off_npu"] for c in device_profile_checks(manifest_of(export), 8, 100))


def test_no_token_fails_at_once_with_how_to_configure(scratch_export, tmp_path):
    started = time.monotonic()
    proc = run_cli(
        "compile", scratch_export, "--target", "aihub:SM8650", env={"QAIHUB_CLIENT_INI": str(tmp_path / "missing.ini")}
    )
    assert proc.returncode == 7, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "qai-hub configure --api_token" in lines[0] and "QAIHUB_CLIENT_INI" in lines[0]
    assert time.monotonic() - started < 30
    assert not (scratch_export / "compiled" / "aihub-SM8650").exists()


def test_wrong_token_and_unreachable_service(hub_env, tmp_path, monkeypatch):
    export, start = hub_env
    hub = start()
    monkeypatch.setenv("QAIHUB_CLIENT_INI", hub.write_ini(tmp_path / "bad.ini", token="expired"))
    with pytest.raises(CompileError, match="Failed to authenticate.*qai-hub configure"):
        compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST)
    assert hub.created["model"] == 0

    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (tmp_path / "down.ini").write_text(f"[api]\napi_token = t\napi_url = http://127.0.0.1:{closed}\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "down.ini"))
    started = time.monotonic()
    with pytest.raises(CompileError, match="cannot reach Qualcomm AI Hub at http://127.0.0.1"):
        compile_targets(export, ["aihub:SM8650"], verify=False, backend_options=FAST)
    assert time.monotonic() - started < 10
    # A service that accepts connections but never answers is cut off at the probe's timeout, not after the
    # client's retries.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        started = time.monotonic()
        with pytest.raises(CompileError, match="cannot reach.*ReadTimeout|cannot reach.*timed out"):
            check_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        assert time.monotonic() - started < 4


def test_an_aihub_model_is_gated_on_the_host_and_then_deploys(hub_env, tmp_path):
    """AI Hub's downloaded model is an ordinary file: the host CPU runs it through the same gate (a text graph fed
    from the host token table it was cut from), so it deploys on its gate record (not on --allow-ungated), table
    and length buckets included; before that it does not."""
    from mcad_export.bundle import ASSETS, bundle
    from mcad_export.errors import InputError

    export, start = hub_env
    start()
    records = compile_targets(export, ["aihub:SM8650"], verify=False, backend_options={**FAST, "aihub_runtime": "onnx"})
    assert [r["runtime"] for r in records] == ["aihub-onnx"] * 4
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    with pytest.raises(InputError, match="the fidelity gate has not run on it"):
        bundle(export, app, target="aihub:SM8650")
    proc = run_cli("verify", export, *[arg for r in records for arg in ("--artifact", r["path"])])
    assert proc.returncode == 0, proc.stderr
    gated = {r["artifact"]: r for r in json.loads((export / "reports" / "fidelity.json").read_text())}
    for compiled in records:
        record = gated[compiled["path"]]
        assert record["runtime"] == "onnxruntime" and record["passed"] and record["sha256"] == compiled["sha256"]
        # the served graph is the uploaded fp32 one: only the int8 rows of the host table differ from PyTorch
        assert record["cosine_min"] > 0.9999, (compiled["path"], record["cosine_min"])
    document = bundle(export, app, target="aihub:SM8650")
    text = document["encoders"]["text"]
    assert text["gate"]["gate"] == "passed" and text["runtime"] == "onnxruntime"
    assert text["host_gather"]["rows"] == 49408 and [b["tokens"] for b in text["length_buckets"]] == [16, 32]
    rows = app / ASSETS / text["host_gather"]["rows_file"]
    assert rows.stat().st_size == (export / records[1]["files"]["token_table"]["path"]).stat().st_size
