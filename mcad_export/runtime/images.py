"""The one image reader of every stage that takes a user's images (index, calibration): one suffix set,
one size limit, one policy for what is skipped and why. Torch-free.

An image comes out as an 8-bit RGB PIL image, upright (EXIF orientation applied: phone photos are stored
rotated with a tag) and with 16-bit samples scaled, not clipped, to 8 bits. Anything that cannot be read
that way raises UnreadableImage with a reason; callers skip and count it, never crash.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError, first_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Larger than any camera frame (a 200 MP sensor is 16,320 x 12,240); a PNG header claiming more is a
# decompression bomb, refused before a single pixel is decoded.
MAX_PIXELS = 200_000_000


class UnreadableImage(Exception):
    """Why one file was skipped (message ready for the skip list)."""


def require_folder(folder: Path, option: str = "--images") -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{option} {folder} is not a folder; give a folder of "
            f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files"
        )
    return folder


def list_images(folder: Path, option: str = "--images") -> list[Path]:
    folder = require_folder(folder, option)
    # Anything named like an image is listed, a FIFO or a folder named x.png too: read_image skips it with the
    # reason, so it is reported, never silently left out (and never opened: a FIFO would block the read).
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path, draft_to: int | None = None):
    """An upright 8-bit RGB PIL image, or UnreadableImage saying why not.

    `draft_to`: the caller needs at most this many pixels on the shorter side, so a JPEG is decoded reduced in the
    DCT domain (1/2, 1/4 or 1/8 scale, never below `draft_to` on either side): a 200 MP phone photo decodes at
    about 1/8 of its 600 MB instead of whole. Other formats decode whole."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # Pillow's own bomb guard warns above 89.5 MP and refuses above 179 MP, below the phone photos MAX_PIXELS
    # admits (108 and 200 MP sensors); MAX_PIXELS, checked from the header below, is the one limit.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise UnreadableImage(f"cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise UnreadableImage(f"not a regular file ({kind})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise UnreadableImage(f"too large: {w} x {h} pixels (limit {MAX_PIXELS:,})")
                if draft_to and im.format == "JPEG":
                    im.draft("RGB", (draft_to, draft_to))
                im.load()
                upright = ImageOps.exif_transpose(im)
                return to_rgb8(upright)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(f"too large (decompression bomb guard): {first_line(e)}") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise UnreadableImage(f"{type(e).__name__}: {first_line(e)}") from None


def to_rgb8(im):
    """RGB with 8-bit samples. PIL's convert() clips 16-bit grey ("I;16", "I") at 255, turning most of a
    16-bit image white; scale it instead (65535 -> 255, as the 16->8 bit rule x * 255 / 65535 rounds)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float64) * (255.0 / 65535.0)  # "I" here: 16-bit PNG grey (PIL's widening)
        im = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    return im if im.mode == "RGB" else im.convert("RGB")
