"""`report --device-bench FILE`: the app's on-device benchmark comes home, checked field by field, and is shown
beside the host bench against the 100 MB / 8 ms budget. The files are written here as DeviceBench.java writes them
(no device on this machine); the numbers in them are the test's, never the report's."""

import json

import pytest

from mcad_export import contract

from .conftest import cli


def _record(**changes):
    record = {
        "format": "mcad-device-bench/1",
        "student": "tiny",
        "device": {"manufacturer": "Google", "model": "Pixel 9", "soc": "Tensor G4", "abi": "arm64-v8a", "sdk": 35},
        "runtime": "onnxruntime",
        "accelerator": "CPU",
        "queries": 64,
        "repeats": 5,
        "gallery_size": 12,
        "latency_ms": {
            "tokenize": {"p50": 0.05, "p90": 0.06, "p99": 0.09},
            "encode": {"p50": 3.1, "p90": 3.4, "p99": 4.0},
            "search": {"p50": 0.02, "p90": 0.03, "p99": 0.05},
            "total": {"p50": 3.2, "p90": 3.5, "p99": 4.2},
        },
        "memory_mb": {"vm_rss": 61.5, "vm_hwm": 88.2},
    }
    record.update(changes)
    return record


@pytest.fixture()
def x(tiny_copy):
    return tiny_copy


def test_a_device_bench_is_kept_and_shown_against_the_budget(x, tmp_path, capsys):
    path = tmp_path / "device-bench.json"
    path.write_text(json.dumps(_record()))
    code, _, err = cli(capsys, "report", x, "--device-bench", path)
    assert code == 0, err
    assert json.loads((x / contract.DEVICE_BENCH).read_text())["device"]["model"] == "Pixel 9"
    report = (x / contract.REPORT_MD).read_text()
    assert "PASS on Google Pixel 9 (Tensor G4, arm64-v8a): query p50 3.20 ms (budget 8), VmHWM 88.2 MB" in report
    assert "| encode | 3.100 | 3.400 | 4.000 |" in report
    assert cli(capsys, "report", x)[0] == 0  # a later report keeps showing it
    assert "On the device" in (x / contract.REPORT_MD).read_text()
    data = json.loads((x / contract.REPORT_JSON).read_text())
    assert data["device_bench"]["verdict"]["latency_passed"] and data["device_bench"]["verdict"]["memory_passed"]
    slow = _record(latency_ms={**_record()["latency_ms"], "total": {"p50": 9.5, "p90": 12.0, "p99": 20.0}})
    path.write_text(json.dumps(slow))
    assert cli(capsys, "report", x, "--device-bench", path)[0] == 0
    assert "MISS on Google Pixel 9" in (x / contract.REPORT_MD).read_text()


@pytest.mark.parametrize(
    "record,phrase",
    [
        (_record(format="other/1"), "has format 'other/1'"),
        (_record(device="pixel"), "device is missing"),
        (_record(queries=0), "queries is 0, not a positive whole number"),
        (_record(memory_mb={"vm_rss": 1.0, "vm_hwm": -3}), "memory_mb.vm_hwm is -3"),
        (_record(latency_ms={"total": {"p50": 1, "p90": 2, "p99": 3}}), "latency_ms.tokenize is missing"),
        (
            _record(latency_ms={**_record()["latency_ms"], "encode": {"p50": 5.0, "p90": 4.0, "p99": 6.0}}),
            "percentiles are not ordered",
        ),
        (_record(runtime=["onnxruntime"]), "runtime is ['onnxruntime'], not a short text"),
        ("[1, 2", "is not valid JSON"),
    ],
    ids=["format", "device", "queries", "memory", "stage", "order", "runtime", "json"],
)
def test_a_malformed_device_bench_is_one_line_and_kept_nowhere(x, tmp_path, capsys, record, phrase):
    path = tmp_path / "device-bench.json"
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    code, _, err = cli(capsys, "report", x, "--device-bench", path)
    assert code == 2 and len(err.splitlines()) == 1 and phrase in err, err
    assert not (x / contract.DEVICE_BENCH).exists()
