"""What every student loader returns: two torch encoders plus what the contract needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..runtime.tokenizer import Tokenizer


@dataclass
class Preprocess:
    """How raw images become `pixel_values` (recorded in the manifest, applied by every runtime)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"  # resize shortest side to image_size, then centre-crop
    interpolation: str = "bicubic"

    def to_manifest(self) -> dict:
        return {
            "image_size": self.image_size,
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "channel_order": "RGB",
            "layout": "NCHW",
            "scale": "1/255 then (x - mean) / std",
        }


@dataclass
class Student:
    id: str  # e.g. "open_clip:ViT-B-32", "hf:/path", "embedded:mcad-scenes-student-v1"
    family: str
    image_encoder: object  # torch.nn.Module: pixel_values -> L2-normalised [B, D]
    text_encoder: object  # torch.nn.Module: int32 input_ids [B, L] -> L2-normalised [B, D]
    preprocess: Preprocess
    tokenizer: Tokenizer
    embed_dim: int
    info: dict = field(default_factory=dict)  # weights path/sha256, random_init, notes for the manifest
    # Which reproducible real inputs (data.samples.load_samples) evaluate and calibrate this student,
    # and how many make the evaluation set (parity now, the fidelity gate later).
    sample_kind: str = "varied"
    eval_count: int = 128

    @property
    def context_length(self) -> int:
        return self.tokenizer.context_length

    @property
    def text_masked(self) -> bool:
        """A BERT-family tower takes (input_ids, attention_mask); CLIP towers take the ids alone."""
        return bool(getattr(self.text_encoder, "masked", False))

    @property
    def text_pooling(self) -> str:
        pooling = getattr(self.text_encoder, "pooling", None)
        if pooling in (None, "argmax"):
            return "eot (argmax of token ids)"
        return {
            "mean": "mean over attention_mask",
            "cls": "[CLS] row",
            "pooler": "BERT pooler over [CLS]",
            "last": "last position (padding attended, as SigLIP trains)",
            "first": "first position",
            "eos": "first eos token",
        }[pooling]
