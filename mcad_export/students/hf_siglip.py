"""`hf:<DIR>` SigLIP students: a Hugging Face SiglipModel or Siglip2Model folder (config.json, weights, the
SentencePiece model and its tokenizer_config.json), no hub access. The text tower pools its last position (pads included, as SigLIP trains),
the vision tower its attention-pool head; the tokenizer is the torch-free SentencePiece one, wrapped as
SiglipTokenizer wraps it (runtime/spm_tokenizer.py)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, UnsupportedStudentError, first_line
from .base import Student
from .hf_folder import hf_preprocess, hf_student, load_folder_weights


def _encode_image(model, pixels):
    return model.vision_model(pixel_values=pixels).pooler_output


def _encode_text(model, ids):
    return model.text_model(input_ids=ids).pooler_output


def patchify(pixels, patch: int):
    """[B, C, H, W] -> [B, rows * cols, patch * patch * C], each patch (row, column, channel) as Siglip2's image
    processor writes it (convert_image_to_patches)."""
    b, c, h, w = pixels.shape
    rows, cols = h // patch, w // patch
    return pixels.reshape(b, c, rows, patch, cols, patch).permute(0, 2, 4, 3, 5, 1).reshape(b, rows * cols, -1)


def _encode_image_fixed_grid(model, pixels):
    """Siglip2's NaFlex vision tower at one fixed square grid: the pixels patchified in the graph as its image
    processor patchifies them ((row, column, channel) per patch), every patch attended, one spatial shape; the
    position table's resize for that grid is a constant matmul in transformers 5 (no interpolate to export)."""
    import torch

    patch = model.config.vision_config.patch_size
    b, _, h, w = pixels.shape
    rows, cols = h // patch, w // patch
    patches = patchify(pixels, patch)
    mask = torch.ones(b, rows * cols, dtype=torch.long)
    shapes = torch.tensor([[rows, cols]], dtype=torch.long).expand(b, 2)
    return model.vision_model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes).pooler_output


def load_hf_siglip(folder: Path, raw: dict, *, weights=None, random_init: bool = False) -> Student:
    version2 = raw.get("model_type") == "siglip2"
    if version2:
        try:  # Siglip2 arrived in transformers 4.49; the export's parity check judges whatever version is installed
            from transformers import Siglip2Config as config_class
            from transformers import Siglip2Model as model_class
        except ImportError:
            raise UnsupportedStudentError(
                f"{folder} holds a Siglip2Model, which this transformers does not have; install the version "
                "scripts/setup.sh installs"
            ) from None
    else:
        from transformers import SiglipConfig as config_class  # type: ignore[assignment]
        from transformers import SiglipModel as model_class  # type: ignore[assignment]
    try:
        config = config_class.from_pretrained(folder, local_files_only=True)
        config._attn_implementation = "eager"  # plain matmul-softmax attention traces to portable ONNX
        model = model_class(config).float().eval()
    except Exception as e:  # noqa: BLE001 - transformers raise their own validation errors
        raise InputError(
            f"{folder / 'config.json'} is not a valid SigLIP config: building the model failed ({first_line(e, 160)})"
        ) from None
    info = {"architecture": f"transformers {model_class.__name__}"}
    if random_init:
        info["random_init"] = True
    else:
        load_folder_weights(model, folder, weights, info)
    from .spm_files import load_spm_tokenizer

    tokenizer = load_spm_tokenizer(
        f"hf:{folder.name}",
        [folder],
        context_length=int(config.text_config.max_position_embeddings),
        vocab_size=int(config.text_config.vocab_size),
        clean="none",  # the processors call the tokenizer directly (SiglipTokenizer canonicalizes on its own)
    )
    if version2:
        # NaFlex resizes each image to its own grid; deployed, every image takes the square grid of num_patches
        side = int(round(config.vision_config.num_patches**0.5))
        if side * side != config.vision_config.num_patches:
            raise UnsupportedStudentError(
                f"{folder}: num_patches {config.vision_config.num_patches} is not a square grid"
            )
        preprocess = hf_preprocess(folder, side * int(config.vision_config.patch_size))
        encode_image = _encode_image_fixed_grid
    else:
        preprocess = hf_preprocess(folder, int(config.vision_config.image_size))
        encode_image = _encode_image
    return hf_student(folder, model, encode_image, _encode_text, preprocess, tokenizer, info, text_pooling="last")
