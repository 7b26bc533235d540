"""Retraining the embedded default student (teacher, then MCAD-style distillation)."""
