"""Image preprocessing exactly as the manifest describes it (torch-free; mirrors open_clip's
Resize(shortest side, bicubic) -> CenterCrop -> ToTensor -> Normalize on PIL images)."""

from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def preprocess_image(image, spec: dict) -> np.ndarray:
    """One PIL image or uint8 HxWx3 array -> float32 [3, S, S]."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    size = int(spec["image_size"])
    resample = _RESAMPLE[spec.get("interpolation", "bicubic")]
    w, h = image.size
    if spec.get("resize_mode", "shortest") == "squash":
        image = image.resize((size, size), resample)
    else:
        # torchvision's Resize(int): shorter side -> size, longer side truncated like int(size * long / short).
        if (w, h) != (size, size):
            if w <= h:
                new_w, new_h = size, int(size * h / w)
            else:
                new_w, new_h = int(size * w / h), size
            if (new_w, new_h) != (w, h):
                image = image.resize((new_w, new_h), resample)
        w, h = image.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        if (w, h) != (size, size):
            image = image.crop((left, top, left + size, top + size))
    x: np.ndarray = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(images, spec: dict) -> np.ndarray:
    return np.stack([preprocess_image(im, spec) for im in images]).astype(np.float32)
