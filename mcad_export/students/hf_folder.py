"""What every Hugging Face folder loader reads the same way: weight file names and preprocessor_config.json."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Preprocess

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def hf_preprocess(folder: Path, size: int) -> Preprocess:
    """preprocessor_config.json when the folder has one, else CLIP's normalisation at the tower's size."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return Preprocess(image_size=size, mean=CLIP_MEAN, std=CLIP_STD)
    cfg = json.loads(path.read_text(encoding="utf-8"))
    crop = cfg.get("crop_size", size)
    crop = crop.get("height", size) if isinstance(crop, dict) else int(crop)
    return Preprocess(
        image_size=int(crop),
        mean=tuple(cfg.get("image_mean", CLIP_MEAN)),
        std=tuple(cfg.get("image_std", CLIP_STD)),
        interpolation=_RESAMPLE.get(cfg.get("resample", 3), "bicubic"),
    )
