"""Calibration and evaluation inputs, rebuilt from the manifest (no torch, no student needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..data.samples import load_samples
from ..defaults import NUM_CALIB
from ..errors import InputError
from ..runtime import Tokenizer
from ..runtime.encoders import real_length, text_feed
from ..runtime.images import UnreadableImage, list_images, read_image, require_folder
from ..runtime.preprocess import preprocess_batch


@dataclass
class EncoderInputs:
    pixels: np.ndarray  # float32 [N, 3, S, S], preprocessed per the manifest
    ids: np.ndarray  # int32 [M, L]
    source: str
    skipped_images: int = 0

    def for_encoder(self, encoder: str) -> np.ndarray:
        return self.pixels if encoder == "image" else self.ids


def _tokenizer(root: Path, manifest: dict) -> Tokenizer:
    return Tokenizer.from_artifacts(root, manifest)  # the files the manifest lists, unchanged


def sample_inputs(root: Path, manifest: dict, split: str) -> EncoderInputs:
    """The manifest's evaluation sample kind and count, from `split` (held-out: the gate; calib: tuning)."""
    kind, count = manifest["evaluation"]["samples"], manifest["evaluation"]["count"]
    images, captions = load_samples(kind, split, count, manifest["image"]["image_size"])
    return EncoderInputs(
        preprocess_batch(images, manifest["image"]), _tokenizer(root, manifest)(captions), f"{kind}:{split} x{count}"
    )


def evaluation_inputs(root: Path, manifest: dict) -> EncoderInputs:
    return sample_inputs(root, manifest, manifest["evaluation"]["split"])


def check_calibration_options(images_dir=None, captions_file=None, num_calib: int = NUM_CALIB) -> None:
    """The calibration options refused before any work (here and in `run`'s preflight)."""
    if isinstance(num_calib, bool) or not isinstance(num_calib, int) or num_calib < 1:
        raise InputError(f"--num-calib must be a positive number of samples, got {num_calib}")
    if (images_dir is None) != (captions_file is None):
        raise InputError("give both --calib-images DIR and --calib-captions FILE (or neither for the default set)")
    if images_dir is not None:
        require_folder(images_dir, "--calib-images")
        if not Path(captions_file).is_file():
            raise InputError(f"--calib-captions {captions_file} is not a file (one caption per line)")


def calibration_inputs(
    root: Path,
    manifest: dict,
    *,
    images_dir=None,
    captions_file=None,
    num_calib: int = NUM_CALIB,
    allow_small: bool = False,
) -> EncoderInputs:
    """User data when given (images preprocessed exactly as the manifest says), else the student's calib split."""
    check_calibration_options(images_dir, captions_file, num_calib)
    skipped = 0
    if images_dir is not None:
        folder = Path(images_dir)
        images = []
        for path in list_images(folder, "--calib-images"):
            try:
                images.append(read_image(path, draft_to=2 * manifest["image"]["image_size"]))
            except UnreadableImage:
                skipped += 1  # unreadable files are counted, never fatal (the index's policy: runtime/images.py)
            if len(images) == num_calib:
                break
        try:
            captions = [
                line.strip() for line in Path(captions_file).read_text(encoding="utf-8").splitlines() if line.strip()
            ][:num_calib]
        except UnicodeDecodeError:
            raise InputError(f"--calib-captions {captions_file} is not UTF-8 text (one caption per line)") from None
        except OSError as e:
            raise InputError(f"cannot read --calib-captions {captions_file}: {e.strerror}") from None
        source = f"user: {folder} ({len(images)} images), {captions_file} ({len(captions)} captions)"
    else:
        kind = manifest["evaluation"]["samples"]
        images, captions = load_samples(kind, "calib", num_calib, manifest["image"]["image_size"])
        source = f"{kind}:calib x{num_calib}"
    smallest = min(len(images), len(captions))
    if smallest < num_calib and not allow_small:
        raise InputError(
            f"only {len(images)} calibration images and {len(captions)} captions, fewer than "
            f"--num-calib {num_calib}; add data or pass --allow-small-calibration"
        )
    if smallest == 0:
        raise InputError(
            f"no calibration {'images' if not images else 'captions'} could be read"
            + (f" ({skipped} unreadable image file(s) skipped)" if skipped else "")
        )
    return EncoderInputs(
        preprocess_batch(images, manifest["image"]), _tokenizer(root, manifest)(captions), source, skipped
    )


class ArrayReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over one input array, one sample per call; `names` are the model's
    inputs (a masked text encoder's attention_mask is derived from the ids, as every runner does)."""

    def __init__(self, names, array: np.ndarray, cut: bool = False, table=None):
        super().__init__()
        self.names, self.array, self.pos = list(names), array, 0
        self.cut = cut  # each row cut after its EOT / [SEP] (a masked tower's short-query encoder)
        self.table = table  # the host token table of a graph that starts at the embeddings

    def get_next(self):
        if self.pos >= len(self.array):
            return None
        self.pos += 1
        row = self.array[self.pos - 1 : self.pos]
        return text_feed(self.names, row[:, : real_length(row[0])] if self.cut else row, self.table)

    def rewind(self):
        self.pos = 0
