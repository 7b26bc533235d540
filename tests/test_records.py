"""Typed records (records.py): the manifest's artifacts, fidelity.json and bench.json go through dataclasses with the
contract's enums at both ends; the JSON on disk is unchanged, and anything outside the schema is refused in one line."""

import json

import pytest

from mcad_export.contract import BENCH_REPORT, FIDELITY_REPORT, MANIFEST, Encoder, Format, Precision, Runtime
from mcad_export.errors import InputError
from mcad_export.manifest import dump_manifest, read_manifest
from mcad_export.records import (
    ArtifactRecord,
    BenchReport,
    FidelityRecord,
    bench_json,
    fidelity_json,
    read_bench,
    read_fidelity,
)

RECORD = {"name": "text_encoder", "encoder": "text", "format": "onnx", "runtime": "onnxruntime", "precision": "fp32"}


def _one_line(fn, *args) -> str:
    with pytest.raises(InputError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_finished_run_reads_and_writes_back_byte_for_byte(embedded_run):
    out = embedded_run[0]
    assert dump_manifest(read_manifest(out)) == (out / MANIFEST).read_text()
    assert fidelity_json(read_fidelity(out), out) == (out / FIDELITY_REPORT).read_text()
    assert bench_json(read_bench(out), out) == (out / BENCH_REPORT).read_text()
    # Every record of the run parses into its dataclass with the contract's enums.
    manifest = json.loads((out / MANIFEST).read_text())
    records = [ArtifactRecord.parse(a, f"artifacts[{i}]", "fix") for i, a in enumerate(manifest["artifacts"])]
    assert {r.encoder for r in records} == {Encoder.IMAGE, Encoder.TEXT}
    assert {r.format for r in records} >= {Format.ONNX, Format.TFLITE}
    assert Precision.W8A8 in {r.precision for r in records}
    assert {r.runtime for r in records} == {Runtime.ONNXRUNTIME, Runtime.LITERT}
    bench = BenchReport.parse(json.loads((out / BENCH_REPORT).read_text()), "bench.json", "fix")
    assert bench.threads == 1 and bench.gallery_size == 100_000


def test_records_keep_the_key_order_and_leave_absent_fields_absent():
    record = ArtifactRecord.parse({**RECORD, "path": "text_encoder.onnx", "sha256": None}, "r", "fix")
    assert record.precision is Precision.FP32 and record.runtime is Runtime.ONNXRUNTIME
    assert list(record.to_json()) == [*RECORD, "path", "sha256"]
    assert record.to_json()["sha256"] is None and "parity" not in record.to_json()
    # A device-only runtime is named per toolchain and kept as it is.
    device = ArtifactRecord.parse({**RECORD, "path": "m.tflite", "runtime": "aihub-tflite"}, "r", "fix")
    assert device.runtime == "aihub-tflite"


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"quantized_with": "magic"}, "has a field no mcad-export stage writes ('quantized_with')"),
        ({"encoder": "audio"}, "artifacts[3].encoder is 'audio', which mcad-export does not know (one of image, text)"),
        ({"precision": "int3"}, "artifacts[3].precision is 'int3', which mcad-export does not know"),
        ({"runtime": "onnxruntime-gpu"}, "artifacts[3].runtime is 'onnxruntime-gpu', which mcad-export does not know"),
    ],
)
def test_an_artifact_outside_the_schema_is_refused_in_one_line(change, expected):
    message = _one_line(ArtifactRecord.parse, {**RECORD, "path": "x.onnx", **change}, "M: artifacts[3]", "re-export")
    assert expected in message and message.endswith("; re-export")


def test_a_missing_required_field_is_named():
    message = _one_line(ArtifactRecord.parse, RECORD, "M: artifacts[0]", "re-export")
    assert message == "M: artifacts[0] lacks path; re-export"


def test_fidelity_and_bench_reports_outside_the_schema_are_refused(tmp_path):
    record = {
        "artifact": "text_encoder.onnx",
        "name": "text_encoder",
        "encoder": "text",
        "runtime": "qnn-htp-sim",
        "precision": "w16a16",
        "size_bytes": 1,
        "passed": True,
    }
    assert FidelityRecord.parse(record, "f", "fix").runtime == "qnn-htp-sim"
    (tmp_path / "reports").mkdir()
    (tmp_path / FIDELITY_REPORT).write_text(json.dumps([{**record, "recall_at_2": 0.5}]))
    assert "fidelity.json[0] has a field no mcad-export stage writes ('recall_at_2')" in _one_line(
        read_fidelity, tmp_path
    )
    (tmp_path / FIDELITY_REPORT).write_text("{not json")
    assert "fidelity.json is not valid JSON" in _one_line(read_fidelity, tmp_path)
    (tmp_path / BENCH_REPORT).write_text(json.dumps({"student": "s", "threads": 1}))
    assert "bench.json lacks gallery_size, query_latency_ms, peak_rss_mb, artifacts, budget" in _one_line(
        read_bench, tmp_path
    )
    # A writer cannot put a field the schema lacks into a report either.
    assert "has a field no mcad-export stage writes ('p50')" in _one_line(
        fidelity_json, [{**record, "p50": 1}], tmp_path
    )
