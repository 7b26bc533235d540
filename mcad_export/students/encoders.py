"""A thin torch module that makes one tower of a dual encoder exportable on its own."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class Tower(nn.Module):
    """`encode(model, x)` -> unnormalised features; the tower returns them L2-normalised (the contract)."""

    def __init__(self, model, encode, pooling: str | None = None):
        super().__init__()
        self.model = model
        self._encode = encode
        self.pooling = pooling  # a text tower's pooled position, for the manifest (Student.text_pooling)

    def forward(self, x):
        return F.normalize(self._encode(self.model, x), dim=-1)
