"""`mcad-export compile DIR --target T`: what Snapdragon and Dimensity chips load, checked before any phone.

Each target's files go to compiled/<backend>-<SoC>/ (staged, then renamed into place whole), are
registered in the manifest (`artifacts`, with `target`), and, where the host can run them (the
QNN HTP simulator), go through the same fidelity gate as every other artifact.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..atomic import locks_folder, replaced_directory, write_text_atomic
from ..contract import COMPILED_DIR, MANIFEST
from ..defaults import NUM_CALIB, SIM_SAMPLES
from ..manifest import dump_manifest, file_record, read_manifest, tool_versions
from .targets import Target, all_targets, resolve

DEFAULT_SIM_SAMPLES = SIM_SAMPLES


@locks_folder("compile")
def compile_targets(
    directory,
    specs,
    *,
    allow_cpu_fallback: bool = False,
    sim_samples: int = DEFAULT_SIM_SAMPLES,
    num_calib: int = NUM_CALIB,
    allow_small_calibration: bool = False,
    verify: bool = True,
    gate=None,
    progress=None,
    backend_options: dict | None = None,
) -> list[dict]:
    """Compiles for every target (all specs resolved first, so a typo fails before minutes of work)."""
    say = progress or (lambda message: None)
    root = Path(directory)
    targets = [resolve(spec) for spec in specs]
    options = {
        "allow_cpu_fallback": allow_cpu_fallback,
        "num_calib": num_calib,
        "allow_small_calibration": allow_small_calibration,
        **(backend_options or {}),
    }
    compiled = []
    for target in targets:
        started = time.time()
        manifest = read_manifest(root)
        folder = root / COMPILED_DIR / target.folder
        with replaced_directory(folder, root=root) as stage:  # a failed first compile leaves no empty compiled/ behind
            # The gate goes to the backend (the QNN one tunes its weight precision against it), not into the manifest.
            records = target.compile_fn()(root, manifest, target, stage, {**options, "gate": gate}, say)
        for record in records:
            record["files"] = {
                k: file_record(root, f"{COMPILED_DIR}/{target.folder}/{v}") for k, v in record["files"].items()
            }
            record.update(next(iter(record["files"].values())))  # the first file is the artifact itself
            record["verify_samples"] = sim_samples
        # Written per target, so targets finished before an interruption stay registered.
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a.get("target") != target.id] + records
        manifest.setdefault("compile", {})[target.id] = {
            "seconds": round(time.time() - started, 1),
            "options": options,
            "tools": tool_versions("onnxruntime", "onnxruntime-qnn", "ai-edge-litert", "qai-hub"),
        }
        write_text_atomic(root / MANIFEST, dump_manifest(manifest), root=root)
        compiled += records
    if verify and compiled:
        from ..quantize.fidelity import DEFAULT_GATE
        from ..quantize.verify import verify_artifacts

        verify_artifacts(root, gate or DEFAULT_GATE, progress=progress, only={r["path"] for r in compiled})
    return compiled


__all__ = ["Target", "all_targets", "compile_targets", "resolve"]
