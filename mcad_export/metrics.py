"""Retrieval metrics shared by training, export checks and (later) the fidelity gate. numpy only."""

from __future__ import annotations

import numpy as np


def recall_at(image_embeds: np.ndarray, text_embeds: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Text->image and image->text recall where caption i belongs to image i.

    Ties count against the model (a strictly higher score outranks), so a constant encoder scores 0.
    """
    sims = text_embeds @ image_embeds.T
    diag = np.diag(sims)[:, None]
    rank_t2i = (sims > diag).sum(1)  # images scoring above the true one, per caption
    rank_i2t = (sims.T > diag).sum(1)  # captions scoring above the true one, per image
    out = {}
    for k in ks:
        out[f"t2i_r{k}"] = float((rank_t2i < k).mean())
        out[f"i2t_r{k}"] = float((rank_i2t < k).mean())
    return out
