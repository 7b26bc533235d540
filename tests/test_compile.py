"""Compile targets: the SoC table, offline QNN HTP compile checked on the simulator, LiteRT NPU failures."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mcad_export.bundle import bundle
from mcad_export.contract import FIDELITY_REPORT, MANIFEST

from .conftest import run_cli

SIM_SAMPLES = 24


def test_targets_lists_snapdragon_and_dimensity():
    proc = run_cli("targets")
    assert proc.returncode == 0, proc.stderr
    for needle in (
        "qnn:SM8650",
        "Snapdragon 8 Gen 3",
        "v75",
        "57",
        "Samsung Galaxy S24",
        "qnn:SM8550",
        "qnn:SM8750",
        "litert:mediatek:MT6989",
        "Dimensity 9300",
        "litert:mediatek:MT6991",
        "litert:qualcomm:SM8650",
    ):
        assert needle in proc.stdout, needle


@pytest.mark.parametrize(
    "spec, message",
    [
        ("qnn:SM8651", "did you mean qnn:SM8650"),
        ("qnn:MT6989", "is a mediatek chip"),
        ("tpu:SM8650", "unknown target"),
    ],
)
def test_bad_targets_fail_before_any_work(scratch_export, spec, message):
    before = (scratch_export / MANIFEST).read_text()
    proc = run_cli("compile", scratch_export, "--target", "qnn:SM8650", "--target", spec)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (scratch_export / MANIFEST).read_text() == before and not (scratch_export / "compiled").exists()


def independent_simulator_run(model_path, soc, inputs, table=None):
    """The checker's own QNN EP session (not the project's helper): HTP backend, no CPU fallback. `table`: the
    (int8 rows, scales) a text graph that starts at the embeddings is fed from, looked up here with numpy."""
    import onnxruntime as ort
    import onnxruntime_qnn

    if not any(d.ep_name == "QNN" for d in ort.get_ep_devices()):
        ort.register_execution_provider_library("QNN", onnxruntime_qnn.get_library_path())
    options = ort.SessionOptions()
    options.add_provider_for_devices(
        [d for d in ort.get_ep_devices() if d.ep_name == "QNN"],
        {"backend_type": "htp", "htp_arch": str(soc["htp_arch"]), "soc_model": str(soc["soc_model"])},
    )
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    session = ort.InferenceSession(str(model_path), options)
    names = [i.name for i in session.get_inputs()]
    if table is None:
        return np.concatenate([session.run(None, {names[0]: x[None]})[0] for x in inputs])
    rows, scales = table
    feeds = [
        {"token_embeds": (rows[x].astype(np.float32) * scales[x][:, None])[None], "input_ids": x[None]} for x in inputs
    ]
    return np.concatenate([session.run(None, {n: feed[n] for n in names})[0] for feed in feeds])


def test_qnn_compile_runs_on_the_htp_simulator_and_passes_the_gate(scratch_export):
    proc = run_cli("compile", scratch_export, "--target", "qnn:SM8650", "--sim-samples", SIM_SAMPLES, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((scratch_export / MANIFEST).read_text())
    compiled = [a for a in manifest["artifacts"] if a.get("target") == "qnn:SM8650"]
    # The contract's two encoders plus the text encoder's 16- and 32-token buckets (static HTP graphs).
    assert sorted((a["encoder"], (a.get("length_bucket") or {}).get("tokens", 0)) for a in compiled) == [
        ("image", 0),
        ("text", 0),
        ("text", 16),
        ("text", 32),
    ]
    folder = scratch_export / "compiled" / "qnn-SM8650"
    table_rows, scales = np.load(folder / "token_table.int8.npy"), np.load(folder / "token_table.scales.npy")
    token_weights = onnx.numpy_helper.to_array(
        next(
            i
            for i in onnx.load(str(scratch_export / "text_encoder.onnx")).graph.initializer
            if list(i.dims[:1]) == [49408]
        )
    )
    # The host token table holds the student's own rows, int8 with one scale per row (1/254 of each row's range).
    assert table_rows.dtype == np.int8 and table_rows.shape == token_weights.shape and scales.shape == (49408,)
    assert np.abs(table_rows * scales[:, None] - token_weights).max() <= scales.max() / 2 + 1e-7
    for a in compiled:
        assert a["runtime"] == "qnn-htp" and a["precision"] == "w8a16" and a["soc"]["soc_model"] == 57
        if a["encoder"] == "text":
            # The text graphs start at the embeddings: no 49,408-row table inside the HTP binary.
            host = a["host_gather"]
            assert [i["name"] for i in a["inputs"]] == ["token_embeds", "input_ids"] and host["reads_input_ids"]
            assert a["inputs"][0]["shape"] == [1, a["inputs"][1]["shape"][1], 96] and host["rows"] == 49408
            assert host["parity"]["fp32_rows_min_cosine"] >= 0.99999 and host["parity"]["int8_rows_min_cosine"] > 0.9999
            assert a["size_bytes"] < 2_000_000 and host["bytes"] == table_rows.nbytes + scales.nbytes
        # The default weights passed the tuning split, so no other weight step was tried.
        assert [(s["weights"], s["passed"]) for s in a["tuning"]["steps"]] == [("uint8 per tensor", True)]
        assert a["ops"]["cpu"] == 0 and a["ops"]["htp"] == a["ops"]["compute"] > 50 and a["ops"]["contexts"] == 1
        tokens = (a.get("length_bucket") or {}).get("tokens")
        if tokens:
            assert a["inputs"][1]["shape"] == [1, tokens] and a["source"] == f"buckets/text_encoder.len{tokens}.onnx"
        graph = onnx.load(str(scratch_export / a["path"])).graph
        assert [n.op_type for n in graph.node] == ["EPContext"]  # the whole encoder is one HTP binary
        assert (scratch_export / a["path"]).stat().st_size == a["size_bytes"] > 100_000
    # The folder holds what the records list (context model and its QDQ source), no intermediate copies.
    # (the host token table once, shared by the full graph and its buckets)
    assert sorted(p.name for p in (scratch_export / "compiled" / "qnn-SM8650").iterdir()) == sorted(
        {Path(f["path"]).name for a in compiled for f in a["files"].values()}
    )
    records = {r["artifact"]: r for r in json.loads((scratch_export / FIDELITY_REPORT).read_text())}
    reference = np.load(scratch_export / "reference" / "eval_embeddings.npz")
    from mcad_export.quantize.calibration import evaluation_inputs

    evaluation = evaluation_inputs(scratch_export, manifest)
    for a in compiled:
        record = records[a["path"]]
        assert record["runtime"] == "qnn-htp-sim" and record["samples"] == SIM_SAMPLES and record["passed"]
        # Independently: run the compiled file on the simulator and compare with PyTorch fp32. A bucket is fed
        # the captions that fit it (real length up to EOT <= its tokens), cut to its length.
        inputs, rows = evaluation.for_encoder(a["encoder"]), np.arange(len(reference["text_embeds"]))
        tokens = (a.get("length_bucket") or {}).get("tokens")
        if tokens:
            rows = rows[inputs.argmax(1) < tokens]
            inputs = inputs[rows][:, :tokens]
        table = (table_rows, scales) if a["encoder"] == "text" else None
        embeds = independent_simulator_run(scratch_export / a["path"], a["soc"], inputs[:SIM_SAMPLES], table)
        embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
        cosine = (embeds * reference[f"{a['encoder']}_embeds"][rows[:SIM_SAMPLES]]).sum(1)
        assert cosine.mean() >= 0.999 and cosine.mean() == pytest.approx(record["cosine_mean"], abs=1e-4)
    # Other artifacts' gate records are kept, not re-run.
    assert records["text_encoder.onnx"]["runtime"] == "onnxruntime"
    # The report shows the targets with their NPU coverage and simulator result.
    assert run_cli("report", scratch_export).returncode == 0
    markdown = (scratch_export / "reports" / "report.md").read_text()
    assert "## SoC targets" in markdown and "qnn:SM8650 (Snapdragon 8 Gen 3)" in markdown and "qnn-htp-sim" in markdown
    assert "text_encoder.qnn_ctx.onnx starts at the embeddings: its 49,408 x 96 token table is looked up" in markdown
    # The Android bundle for this target carries the buckets; the app picks one per query (LengthBuckets).
    app = scratch_export.parent / "app"
    shutil.copytree(
        Path(__file__).parents[1] / "android_demo" / "app" / "src" / "main",
        app / "app" / "src" / "main",
        ignore=shutil.ignore_patterns("assets"),
    )
    doc = bundle(scratch_export, app, target="qnn:SM8650")
    text = doc["encoders"]["text"]
    assert text["file"] == "models/text_encoder.qnn_ctx.onnx" and text["accelerator"] == "QNN-HTP"
    assert [(b["tokens"], b["file"]) for b in text["length_buckets"]] == [
        (16, "models/text_encoder.len16.qnn_ctx.onnx"),
        (32, "models/text_encoder.len32.qnn_ctx.onnx"),
    ]
    for b in text["length_buckets"]:
        assert (app / "app/src/main/assets/mcad" / b["file"]).read_bytes() == (
            scratch_export / b["source"]
        ).read_bytes()
    # ... and the host token table the app looks rows up in (ai.mcad.core.HostTokenTable), counted per query.
    host = text["host_gather"]
    assert (host["rows_file"], host["scales_file"], host["input"]) == (
        "models/token_table.int8.npy",
        "models/token_table.scales.npy",
        "token_embeds",
    )
    assert (app / "app/src/main/assets/mcad" / host["rows_file"]).read_bytes() == (
        folder / "token_table.int8.npy"
    ).read_bytes()
    assert host["resident_bytes_per_query"] == 77 * (96 + 4) and doc["budget"]["host_token_table_mapped_mb"] > 4.5


def test_qnn_compile_reports_ops_left_for_the_cpu(tmp_path):
    """An op HTP has no kernel for (float Det) must show up as CPU fallback, never silently."""
    from mcad_export.compile.qnn import compile_context_in_process
    from mcad_export.compile.targets import resolve
    from mcad_export.isolated import run_isolated

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Det", ["r"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), tmp_path / "m.onnx")
    out = run_isolated(
        compile_context_in_process,
        {"qdq": str(tmp_path / "m.onnx"), "context": str(tmp_path / "ctx.onnx"), "soc": resolve("qnn:SM8650").soc},
        {},
        what="test compile",
    )
    assert "Det" in [str(op) for op in out["cpu_ops"]]


@pytest.mark.parametrize(
    "target,library",
    [("litert:mediatek:MT6989", "NeuronAdapter"), ("litert:qualcomm:SM8650", "libQnnHtp.so")],
    ids=["mediatek", "qualcomm"],
)
def test_litert_npu_compile_fails_cleanly_without_the_sdk(scratch_export, target, library):
    before = (scratch_export / MANIFEST).read_text()
    proc = run_cli("compile", scratch_export, "--target", target)
    assert proc.returncode == 7, proc.stderr
    line = proc.stderr.strip()
    vendor = target.split(":")[1]
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {target}")
    assert library in line and f"pip install ai-edge-litert-sdk-{vendor}" in line
    # Whatever the tool wrote (it writes 0-byte .tflite files here), nothing is left behind.
    assert not (scratch_export / "compiled").exists()
    assert not [p for p in scratch_export.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert (scratch_export / MANIFEST).read_text() == before


def test_a_tflite_text_graph_is_cut_at_its_token_lookup(scratch_export, tmp_path):
    """What `litert:` targets compile: the export's TFLite text graph starting at token_embeds (the lookup replaced
    in the flatbuffer, the 49,408-row table out of the file), equal to the whole graph when fed the fp32 rows, and
    within the int8 rows' error when fed those, on the host's LiteRT; the image graph has no lookup to cut."""
    from mcad_export.compile.host_gather import host_table, prove, prove_ids
    from mcad_export.compile.tflite_gather import cut_tflite_lookup
    from mcad_export.runtime.encoders import tflite_embed

    manifest = json.loads((scratch_export / MANIFEST).read_text())
    src, cut = scratch_export / "tflite" / "text_encoder.tflite", tmp_path / "cut.tflite"
    values, io = cut_tflite_lookup(src, cut)
    assert values.shape == (49408, 96) and io["reads_input_ids"]  # the causal tower pools at EOT: ids stay an input
    assert [(i["name"], i["shape"]) for i in io["inputs"]] == [("token_embeds", [1, 77, 96]), ("input_ids", [1, 77])]
    assert src.stat().st_size - cut.stat().st_size >= values.nbytes  # the table left the file
    ids = prove_ids(scratch_export, manifest, None)
    host = host_table(values, tmp_path, src.name)
    parity = prove(lambda table=None: tflite_embed(cut if table else src, ids, table), values, tmp_path)
    assert parity["samples"] == 64 and parity["fp32_rows_min_cosine"] >= 0.99999
    assert 0.9999 < parity["int8_rows_min_cosine"] < 1.0 and host["bytes"] == 49408 * (96 + 4)
    assert cut_tflite_lookup(scratch_export / "tflite" / "image_encoder.tflite", tmp_path / "image.tflite") is None
    assert not (tmp_path / "image.tflite").exists()
