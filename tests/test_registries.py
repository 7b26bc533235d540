"""Registry coverage: every student loader, compile backend, precision and verify runner that registers itself is
exercised by some test, so adding one to a registry without a test fails here, naming what is missing."""

from pathlib import Path

from mcad_export.compile.targets import all_targets
from mcad_export.quantize.onnx_recipes import DEFAULT_PRECISIONS, PRECISIONS
from mcad_export.quantize.tflite_recipes import TFLITE_RECIPES
from mcad_export.quantize.verify import RUNNERS
from mcad_export.students import loader_prefixes

TESTS = Path(__file__).resolve().parent
SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name)


def test_every_student_loader_is_loaded_by_a_test():
    missing = [prefix for prefix in loader_prefixes() if f'"{prefix}:' not in SOURCES]
    assert not missing, f"student loaders no test loads: {missing}"


def test_every_compile_backend_is_compiled_by_a_test():
    backends = {t.backend for t in all_targets()}
    assert {"qnn", "aihub", "litert:mediatek", "litert:qualcomm"} <= backends
    missing = [b for b in sorted(backends) if f"{b}:" not in SOURCES]
    assert not missing, f"compile backends no test targets: {missing}"


def test_every_precision_goes_through_the_gate_in_a_test():
    # The default precisions are quantized and verified by the end-to-end run fixture; the others need a test
    # that asks for them by name.
    for precision in PRECISIONS:
        assert precision in DEFAULT_PRECISIONS or f'"--precision", "{precision}"' in SOURCES, precision
    assert set(TFLITE_RECIPES) <= set(DEFAULT_PRECISIONS), "TFLite recipes ride on the default run"


def test_every_verify_runner_runs_in_a_test():
    # onnxruntime: every run; litert: the TFLite twins and their variants; qnn-htp: the HTP simulator compile test.
    needles = {"onnxruntime": "verify", "litert": "tflite", "qnn-htp": "qnn-htp"}
    assert set(RUNNERS) == set(needles), f"a new runner needs a test and an entry here: {set(RUNNERS) - set(needles)}"
    for runtime, needle in needles.items():
        assert needle in SOURCES, runtime
