"""`mcad-export verify DIR`: the fidelity gate over every artifact in the manifest, on its runtime.

Held-out evaluation set (manifest["evaluation"]) vs the PyTorch fp32 reference embeddings saved
at export. Writes reports/fidelity.json, then fails if any artifact misses the gate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..contract import FIDELITY_REPORT, REPORTS_DIR
from ..errors import FidelityGateError
from ..isolated import run_isolated
from ..manifest import read_manifest
from ..runtime.encoders import onnx_embed, ort_optimization
from .calibration import evaluation_inputs
from .fidelity import DEFAULT_GATE, Gate, score


def _onnxruntime(path, input_name, array, artifact):
    return onnx_embed(path, input_name, array, optimization=ort_optimization(artifact))


def _litert_isolated(path, input_name, array, artifact):
    # Quantized TFLite models have aborted the LiteRT runtime here; a crash must fail one record, not the run.
    return run_isolated("tflite-embed", {"model": str(path), "input_name": input_name}, {"x": array},
                        what=f"LiteRT running {Path(path).name}")["embeds"]


# Runtime name in the manifest -> function(path, input name, array, artifact record) -> embeddings.
RUNNERS = {"onnxruntime": _onnxruntime, "litert": _litert_isolated}


def verify_artifacts(out_dir, gate: Gate = DEFAULT_GATE, progress=None) -> list[dict]:
    say = progress or (lambda message: None)
    root = Path(out_dir)
    manifest = read_manifest(root)
    evaluation = evaluation_inputs(root, manifest)
    reference = dict(np.load(root / manifest["evaluation"]["reference"]))
    meaningful = manifest["evaluation"].get("recall_meaningful", False)
    records, failures = [], []
    for artifact in manifest["artifacts"]:
        runner = RUNNERS.get(artifact["runtime"])
        base = {"artifact": artifact["path"], "name": artifact["name"], "encoder": artifact["encoder"],
                "runtime": artifact["runtime"], "precision": artifact["precision"],
                "size_bytes": artifact["size_bytes"]}
        if runner is None:
            records.append({**base, "passed": None, "skipped": f"no host runner for runtime {artifact['runtime']}"})
            continue
        say(f"verifying {artifact['path']} on {artifact['runtime']}")
        embeds = runner(root / artifact["path"], artifact["inputs"][0]["name"],
                        evaluation.for_encoder(artifact["encoder"]), artifact)
        result = score(artifact["encoder"], embeds, reference)
        misses = gate.misses(result)
        records.append({**base, **result, "samples": len(embeds), "recall_meaningful": meaningful,
                        "gate": gate.__dict__, "passed": not misses, "misses": misses})
        failures += [f"{artifact['path']}: {m}" for m in misses]
    (root / REPORTS_DIR).mkdir(exist_ok=True)
    write_text_atomic(root / FIDELITY_REPORT, json.dumps(records, indent=2) + "\n")
    if failures:
        raise FidelityGateError("fidelity gate failed: " + "; ".join(failures))
    return records
