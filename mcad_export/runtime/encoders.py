"""Running exported encoders on the host: ONNX Runtime and LiteRT (torch-free, imports lazy)."""
from __future__ import annotations

import numpy as np

TFLITE_SIGNATURE = "serving_default"


def ort_optimization(artifact: dict) -> str:
    """The graph optimization level an artifact must run at (manifest: recipe.ort_graph_optimization)."""
    return artifact.get("recipe", {}).get("ort_graph_optimization", "all")


def onnx_session(path, threads: int = 0, optimization: str = "all", log_level: int = 3):
    """`optimization`: "all" (default) or "basic", as `ort_optimization(artifact)` says."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = log_level
    options.intra_op_num_threads = threads
    options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimization]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_embed(path, input_name: str, array: np.ndarray, batch: int = 50, threads: int = 0,
               optimization: str = "all") -> np.ndarray:
    session = onnx_session(path, threads, optimization)
    return np.concatenate([session.run(None, {input_name: array[i:i + batch]})[0]
                           for i in range(0, len(array), batch)]).astype(np.float32)


def tflite_embed(path, input_name: str, array: np.ndarray) -> np.ndarray:
    """TFLite encoders have a static batch of 1: one invoke per sample."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(TFLITE_SIGNATURE)
    return np.concatenate([next(iter(runner(**{input_name: array[i:i + 1]}).values()))
                           for i in range(len(array))]).astype(np.float32)
