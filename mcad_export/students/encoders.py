"""Thin torch modules that make one tower of a dual encoder exportable on its own."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class ImageTower(nn.Module):
    def __init__(self, model, encode):
        super().__init__()
        self.model = model
        self._encode = encode

    def forward(self, pixel_values):
        return F.normalize(self._encode(self.model, pixel_values), dim=-1)


class TextTower(nn.Module):
    def __init__(self, model, encode):
        super().__init__()
        self.model = model
        self._encode = encode

    def forward(self, input_ids):
        return F.normalize(self._encode(self.model, input_ids), dim=-1)
