"""Default values shared by the option dataclasses (options.py) and the stage functions that take them as
keyword defaults. A leaf module (no imports), so every stage can use it without an import cycle."""

DEFAULT_OUT = "mcad-out"
NUM_CALIB = 128  # calibration samples per encoder (quantize, the HTP QDQ model)
SIM_SAMPLES = 100  # held-out samples checked on the (slow) HTP simulator
INDEX_BATCH = 32  # images per image-encoder call while indexing
BUDGET_MB, BUDGET_MS = 100.0, 8.0  # MCAD's phone claim: ~100 MB running memory, ~8 ms search
AIHUB_TIMEOUT_S = 3600.0

# The stages of `run`, in order (pipeline.py runs them; options.py checks `force` names against them).
STAGES = ("export", "short-query", "quantize", "verify", "compile", "index", "bench", "report", "bundle", "apk")
