"""Registry coverage: every student loader, compile backend, precision and verify runner that registers itself is
exercised by some test, so adding one to a registry without a test fails here, naming what is missing."""

import os
from pathlib import Path

from mcad_export.compile.targets import all_targets
from mcad_export.quantize.onnx_recipes import PRECISIONS
from mcad_export.quantize.tflite_recipes import TFLITE_RECIPES
from mcad_export.quantize.verify import RUNNERS
from mcad_export.students import loader_prefixes

from .conftest import unavailable

TESTS = Path(__file__).resolve().parent


def _used(registry: str) -> set[str]:
    """What the suite's processes really dispatched through `registry` (mcad_export/usage.py's log)."""
    log = Path(os.environ["MCAD_REGISTRY_LOG"])
    lines = log.read_text(encoding="utf-8").split("\n") if log.is_file() else []
    return {line.split(":", 1)[1] for line in lines if line.startswith(f"{registry}:")}


def _require_used(registry: str, names, what: str) -> None:
    missing = sorted(set(names) - _used(registry))
    if missing:
        # These run last (conftest orders them): a partial run (-k, -m, one file) cannot have called everything.
        unavailable(f"{what} no test called in this run: {missing} (the whole suite must call each)")


def test_every_student_loader_is_loaded_by_a_test():
    _require_used("loader", loader_prefixes(), "student loaders")


def test_every_compile_backend_is_compiled_by_a_test():
    backends = {t.backend for t in all_targets()}
    assert {"qnn", "aihub", "litert:mediatek", "litert:qualcomm"} <= backends
    _require_used("backend", backends, "compile backends")


def test_every_precision_goes_through_the_gate_in_a_test():
    _require_used("gated", [f"onnx:{p}" for p in PRECISIONS] + [f"tflite:{p}" for p in TFLITE_RECIPES], "precisions")


def test_every_verify_runner_runs_in_a_test():
    _require_used("runner", RUNNERS, "verify runners")


def _package_imports() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere in its body (lazy imports count: a cycle is a cycle)."""
    import ast

    root = TESTS.parent / "mcad_export"
    modules = {
        ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                found = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name].update(f for f in found if f in modules and f != name)
    return graph


def test_no_import_cycle_inside_the_package():
    graph = _package_imports()
    assert (
        "mcad_export.pipeline" in graph["mcad_export.cli.run"] and "mcad_export.stages" in graph["mcad_export.pipeline"]
    )
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_recipe_and_runner_is_a_contract_value():
    from mcad_export.compile.htp_recipe import WEIGHT_STEPS
    from mcad_export.contract import Precision, Runtime

    # quantize's recipes, fp32, and the precisions only the QNN compile writes (its weight steps)
    assert set(PRECISIONS) | {"fp32"} | {p for _, p in WEIGHT_STEPS} == {p.value for p in Precision}
    assert set(RUNNERS) == {r.value for r in Runtime}


def test_a_record_with_an_unknown_precision_or_format_is_refused_in_one_line(tmp_path):
    import json

    from mcad_export.errors import InputError
    from mcad_export.guard import validate_manifest

    record = {"path": "image_encoder.onnx", "name": "image_encoder", "encoder": "image", "format": "onnx"}
    for key, value in (("precision", "int8-aihub"), ("format", "onnnx")):
        manifest = {"artifacts": [{**record, "precision": "fp32", key: value}]}
        try:
            validate_manifest(json.loads(json.dumps(manifest)), tmp_path / "manifest.json")
        except InputError as e:
            message = str(e)
        else:
            raise AssertionError(f"{key} {value!r} was accepted")
        assert f"artifacts[0].{key} is {value!r}, which mcad-export does not know" in message
        assert "\n" not in message
    validate_manifest({"artifacts": [{**record, "precision": "w8a16"}]}, tmp_path / "manifest.json")
