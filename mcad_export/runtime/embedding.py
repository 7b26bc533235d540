"""Image files -> embedding rows: the one batch function every indexing engine runs (gallery.py locally,
gallery_ray.py inside Ray actors), so their rows and skip lists cannot drift apart. Torch-free."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import UnreadableImage, read_image
from .preprocess import preprocess_image


def embed_files(embed, files: list[Path], root: Path, spec: dict) -> tuple[np.ndarray, list[str], list[dict]]:
    """One batch, as both engines run it: decode, preprocess as the manifest says, embed; unreadable files and
    non-finite rows skipped with the reason. Returns (rows [n, D] float32, names relative to root, skipped)."""
    pixels, names, skipped = [], [], []
    for path in files:
        try:
            # Decoded at >= 2x the model's input side: a 200 MP JPEG need not be decoded whole to be resized to S.
            pixels.append(preprocess_image(read_image(path, draft_to=2 * spec["image_size"]), spec))
            names.append((path, Path(path).relative_to(root).as_posix()))
        except UnreadableImage as e:
            skipped.append({"path": str(path), "reason": str(e)})
        except OSError as e:  # a listed file that is gone, or unreadable for permissions
            skipped.append({"path": str(path), "reason": f"cannot be read: {e.strerror or e}"})
    if not pixels:
        return np.zeros((0, 0), np.float32), [], skipped
    rows = embed(np.stack(pixels).astype(np.float32))
    finite = np.isfinite(rows).all(axis=1)
    for (path, _), ok in zip(names, finite):
        if not ok:
            skipped.append({"path": str(path), "reason": "the image encoder returned non-finite numbers"})
    return rows[finite].astype(np.float32), [n for (_, n), ok in zip(names, finite) if ok], skipped
