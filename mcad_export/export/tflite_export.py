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
        return {self.output_name: self.tower(*inputs.values())}


def export_tflite(tower, example, path: Path, input_name, output_name: str) -> None:
    """`input_name`/`example`: one name and tensor, or lists of them (a masked text encoder's ids and mask)."""
    try:
        import litert_torch
    except ImportError:
        raise InputError(
            "TFLite export needs litert-torch: pip install 'mcad-export[tflite]' (or pass --no-tflite)"
        ) from None

    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_root_logger(), torch.no_grad():
        names = [input_name] if isinstance(input_name, str) else list(input_name)
        examples = [example] if isinstance(example, torch.Tensor) else list(example)
        model = litert_torch.convert(
            _Named(tower, output_name).eval(), sample_kwargs={n: e[:1] for n, e in zip(names, examples)}
        )
        model.export(str(path))
