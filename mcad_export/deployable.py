"""Which artifacts may deploy: the one rule bench, run, bundle and the app's assets follow.

An artifact deploys only when its latest record in reports/fidelity.json says the gate *passed*, was computed on
a runtime that ran the file here (ONNX Runtime, LiteRT, or the QNN HTP simulator), and was computed on the bytes
the file holds now (the record's sha256 equals the artifact's). No fallback: when nothing passed, nothing deploys.

Device-only artifacts (AI Hub compiles, LiteRT NPU) have no host runner; they deploy only when the user says so
(`bundle --allow-ungated`), and bundle.json and the report then say that the gate never ran on them.
"""

from __future__ import annotations

from pathlib import Path

from .contract import DEVICE_RUNTIME_PREFIXES, Runtime
from .errors import InputError
from .records import MEASURED_ON_SIMULATOR, read_fidelity

# Runtimes a gate record may have been computed on: each runs the artifact's own file on this machine.
COMPUTED_ON = (Runtime.ONNXRUNTIME.value, Runtime.LITERT.value, MEASURED_ON_SIMULATOR)


def latest_records(root: Path) -> dict[str, dict]:
    """artifact path -> its last fidelity record (verify --artifact appends replacements at the end)."""
    return {r["artifact"]: r for r in read_fidelity(root)}


def verdict(artifact: dict, records: dict[str, dict]) -> tuple[bool, str]:
    """(may deploy, why) for one manifest artifact under the rule above."""
    record = records.get(artifact["path"])
    if record is None:
        return False, "the fidelity gate has not run on it (run `mcad-export verify DIR`)"
    if record.get("passed") is None:
        return False, f"the fidelity gate could not run it ({record.get('skipped') or 'no numbers recorded'})"
    if record["passed"] is not True:
        misses = "; ".join(record.get("misses") or []) or "see reports/fidelity.json"
        return False, f"it failed the fidelity gate ({misses})"
    if record.get("runtime") not in COMPUTED_ON:
        return False, f"its gate record was not computed by a runtime that ran the file ({record.get('runtime')})"
    if record.get("sha256") != artifact.get("sha256"):
        return False, "the file changed since it was gated (or was gated by an older version): run verify again"
    return True, f"passed the fidelity gate on {record['runtime']}"


def device_only(artifact: dict) -> bool:
    return str(artifact.get("runtime", "")).startswith(DEVICE_RUNTIME_PREFIXES)


def require(root: Path, artifact: dict, *, allow_ungated: bool = False, records: dict | None = None) -> dict:
    """The gate status an artifact deploys with ({"gate": "passed"} or, for a device-only artifact the user
    allowed, {"gate": "not run", "why": ...}); anything else is refused in one line."""
    records = latest_records(root) if records is None else records
    ok, why = verdict(artifact, records)
    if ok:
        return {"gate": "passed", "why": why}
    record = records.get(artifact["path"])
    if device_only(artifact) and allow_ungated and not (record and record.get("passed") is False):
        return {"gate": "not run", "why": f"device-only artifact, deployed with --allow-ungated: {why}"}
    hint = (
        "; it runs only on the device: pass --allow-ungated to ship it unchecked (bundle.json and the report say so)"
        if device_only(artifact)
        else "; deploy an artifact that passed, or rerun quantize/verify"
    )
    raise InputError(f"{artifact['path']} cannot deploy: {why}{hint}")
