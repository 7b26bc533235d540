"""`mcad-export verify DIR`: the fidelity gate over every artifact in the manifest, on its runtime.

Held-out evaluation set (manifest["evaluation"]) vs the PyTorch fp32 reference embeddings saved
at export. Writes reports/fidelity.json, then fails if any artifact misses the gate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import locks_folder, scratch_dir, write_text_atomic
from ..contract import FIDELITY_REPORT, Runtime
from ..errors import FidelityGateError, InputError
from ..guard import reference_embeddings, verified, verified_artifact
from ..isolated import run_isolated
from ..manifest import read_manifest
from ..records import MEASURED_ON_SIMULATOR, fidelity_json, read_fidelity
from ..runtime.encoders import artifact_embed, real_lengths
from ..usage import note
from .calibration import evaluation_inputs
from .fidelity import DEFAULT_GATE, Gate, score, with_languages


def _host_table_files(root, artifact) -> dict:
    """A text graph that starts at the embeddings is fed rows of its host token table (compile/host_gather.py),
    checked against their digests as the model is: {"token_table": path, "token_scales": path}, or {}."""
    files = artifact.get("files") or {}
    return {k: str(verified(root, files[k], "host token table")) for k in ("token_table", "token_scales") if k in files}


def _onnxruntime(root, path, array, artifact):
    # As the query path runs it: a short-query encoder one caption at a time, cut after its own EOT.
    from ..runtime.token_table import HostTokenTable

    return artifact_embed(path, artifact, array, table=HostTokenTable.from_files(_host_table_files(root, artifact)))


def _litert_isolated(root, path, array, artifact):
    # Quantized TFLite models have aborted the LiteRT runtime here; a crash must fail one record, not the run.
    from .tflite_recipes import tflite_embed_in_process

    return run_isolated(
        tflite_embed_in_process,
        {"model": str(path), **_host_table_files(root, artifact)},
        {"x": array},
        what=f"LiteRT running {Path(path).name}",
    )["embeds"]


def _qnn_htp_simulator(root, path, array, artifact):
    # The x86 HTP simulator computes what the phone's NPU will (same context binary); it is slow,
    # so compiled artifacts carry `verify_samples` and are checked on that many held-out samples.
    from ..compile.qnn import simulate_in_process

    return run_isolated(
        simulate_in_process,
        {"model": str(path), "soc": artifact["soc"], **_host_table_files(root, artifact)},
        {"x": array},
        what=f"the QNN HTP simulator running {Path(path).name}",
    )["embeds"]


# Runtime name in the manifest -> function(export root, verified path, array, artifact record) -> embeddings.
RUNNERS = {
    Runtime.ONNXRUNTIME.value: _onnxruntime,
    Runtime.LITERT.value: _litert_isolated,
    Runtime.QNN_HTP.value: _qnn_htp_simulator,
}
# What fidelity.json calls the runtime a record was measured on, where that differs from the target's.
MEASURED_ON = {Runtime.QNN_HTP.value: MEASURED_ON_SIMULATOR}
# AI Hub's downloaded model is an ordinary TFLite / ONNX file: the host CPU runs that very file through the same gate
# (what the phone's NPU computes from it is AI Hub's profile to show; the numbers the gate checks are the file's).
HOST_RUNNER_OF = {"aihub-tflite": Runtime.LITERT.value, "aihub-onnx": Runtime.ONNXRUNTIME.value}


def _host_runtime(artifact: dict, path: Path) -> str | None:
    """The host runtime that can run a device-only artifact's file, or None (e.g. an ONNX holding an HTP context)."""
    runtime = HOST_RUNNER_OF.get(artifact["runtime"])
    if runtime == Runtime.ONNXRUNTIME.value:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        if any(node.op_type == "EPContext" for node in model.graph.node):
            return None  # a compiled context binary: only the device's QNN runs it
    return runtime


def gated_rows(artifact: dict, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which held-out rows an artifact is gated on, and its input for them.

    All rows, or the first `verify_samples` (slow simulators). A length bucket sees only the captions
    that fit it, cut to its length: a longer query never reaches that bucket.
    """
    rows = np.arange(len(inputs))
    tokens = (artifact.get("length_bucket") or {}).get("tokens")
    if tokens:
        rows = rows[real_lengths(inputs) <= tokens]
    rows = rows[: artifact.get("verify_samples") or len(rows)]
    picked = inputs[rows]
    return rows, np.ascontiguousarray(picked[:, :tokens]) if tokens else picked


def _resolve(artifacts: list[dict], wanted, root: Path) -> set[str]:
    """Manifest paths of the artifacts named by path or name; an unknown one fails with the choices."""
    paths = set()
    for name in wanted:
        match = next((a["path"] for a in artifacts if name in (a["path"], a["name"])), None)
        if match is None:
            raise InputError(
                f"--artifact {name}: not in {root}/manifest.json; choose one of: "
                + ", ".join(a["path"] for a in artifacts)
            )
        paths.add(match)
    return paths


@locks_folder("verify")
def verify_artifacts(out_dir, gate: Gate = DEFAULT_GATE, progress=None, only=None) -> list[dict]:
    """Gates every artifact, or with `only` (manifest paths or names) just those: their records replace older ones
    in fidelity.json."""
    with scratch_dir(Path(out_dir)):  # the isolated runners' temporary files stay inside the export
        return _verify(out_dir, gate, progress, only)


def _verify(out_dir, gate: Gate, progress, only) -> list[dict]:
    say = progress or (lambda message: None)
    root = Path(out_dir)
    manifest = read_manifest(root)
    only = None if only is None else _resolve(manifest["artifacts"], only, root)
    evaluation = evaluation_inputs(root, manifest)
    reference = with_languages(reference_embeddings(root, manifest), manifest)
    meaningful = manifest["evaluation"].get("recall_meaningful", False)
    records, failures = [], []
    for artifact in manifest["artifacts"]:
        if only is not None and artifact["path"] not in only:
            continue
        runtime = artifact["runtime"]
        if runtime not in RUNNERS and runtime in HOST_RUNNER_OF:
            runtime = _host_runtime(artifact, verified_artifact(root, artifact)) or runtime
        runner = RUNNERS.get(runtime)
        base = {
            "artifact": artifact["path"],
            "name": artifact["name"],
            "encoder": artifact["encoder"],
            "runtime": MEASURED_ON.get(runtime, runtime),
            "precision": artifact["precision"],
            "size_bytes": artifact["size_bytes"],
            "sha256": artifact["sha256"],
            **({"target": artifact["target"]} if "target" in artifact else {}),
        }
        if runner is None:
            records.append({**base, "passed": None, "skipped": f"no host runner for runtime {artifact['runtime']}"})
            continue
        say(f"verifying {artifact['path']} on {runtime}")
        rows, inputs = gated_rows(artifact, evaluation.for_encoder(artifact["encoder"]))
        embeds = runner(root, verified_artifact(root, artifact), inputs, artifact)
        note("runner", runtime)
        note("gated", f"{artifact['format']}:{artifact['precision']}")
        # A subset is gated against the PyTorch reference of the same rows (recall over a gallery of those images).
        result = score(artifact["encoder"], embeds, {k: v[rows] for k, v in reference.items()}, gate, reference)
        misses = gate.misses(result)
        records.append(
            {
                **base,
                **result,
                "samples": len(embeds),
                "recall_meaningful": meaningful,
                "gate": gate.__dict__,
                "passed": not misses,
                "misses": misses,
            }
        )
        failures += [f"{artifact['path']}: {m}" for m in misses]
    if only is not None:
        records = [r for r in read_fidelity(root) if r["artifact"] not in only] + records
    write_text_atomic(root / FIDELITY_REPORT, fidelity_json(records, root), root=root)
    if failures:
        raise FidelityGateError("fidelity gate failed: " + "; ".join(failures))
    return records
