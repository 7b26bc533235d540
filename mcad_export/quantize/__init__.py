"""Quantization stage (INT8/FP16 variants with a retrieval fidelity gate): issue 3, not built yet."""
