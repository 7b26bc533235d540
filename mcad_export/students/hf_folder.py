"""What every Hugging Face folder loader reads the same way: weight file names and preprocessor_config.json."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Preprocess

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_folder_weights(model, folder: Path, weights, info: dict) -> None:
    """The folder's own weight file (or --weights) into `model`, checked as every loader checks a checkpoint
    (safetensors or torch.load(weights_only=True); missing, unexpected or misshapen keys refused); records the file
    and its sha256 in `info`. position_ids buffers are skipped: transformers versions differ on keeping them."""
    from ..errors import CheckpointError
    from .checkpoint import apply_state_dict, read_state_dict, sha256_of

    path = Path(weights) if weights else next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if path is None:
        raise CheckpointError(f"{folder} has no {' or '.join(WEIGHT_FILES)}; pass --weights FILE")
    state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("position_ids")}
    apply_state_dict(model, state, f"hf:{folder.name}")
    info.update(weights=str(path), weights_sha256=sha256_of(path))


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


def hf_student(
    folder: Path, model, encode_image, encode_text, preprocess: Preprocess, tokenizer, info: dict, text_pooling=None
):
    """The Student of a Hugging Face folder: its two towers, preprocessing and tokenizer, the embedding width read
    from one encoded caption."""
    import torch

    from .base import Student
    from .encoders import Tower

    with torch.no_grad():
        embed_dim = int(encode_text(model, torch.from_numpy(tokenizer(["a"]).astype("int64"))).shape[-1])
    return Student(
        id=f"hf:{folder.resolve().name}",
        family="hf",
        image_encoder=Tower(model, encode_image),
        text_encoder=Tower(model, encode_text, text_pooling),
        preprocess=preprocess,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        info=info,
    )
