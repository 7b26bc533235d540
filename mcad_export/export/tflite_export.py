"""torch -> TFLite (LiteRT) for one encoder via litert-torch, with the contract's I/O names.

TFLite graphs have a static batch of 1 (the on-device query path); indexing loops over images.
litert-torch is imported lazily: it is heavy and only this stage needs it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..logs import quiet_root_logger


class _Named(torch.nn.Module):
    """Gives the TFLite signature the contract's input and output names."""

    def __init__(self, tower, output_name: str):
        super().__init__()
        self.tower, self.output_name = tower, output_name

    def forward(self, **inputs):
        (x,) = inputs.values()
        return {self.output_name: self.tower(x)}


def export_tflite(tower, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    try:
        import litert_torch
    except ImportError:
        raise InputError("TFLite export needs litert-torch: pip install 'mcad-export[tflite]' "
                         "(or pass --no-tflite)") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_root_logger(), torch.no_grad():
        model = litert_torch.convert(_Named(tower, output_name).eval(), sample_kwargs={input_name: example[:1]})
        model.export(str(path))
