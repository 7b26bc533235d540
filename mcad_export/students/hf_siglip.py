"""`hf:<DIR>` SigLIP students: a Hugging Face SiglipModel folder (config.json, weights, spiece.model and its
tokenizer_config.json), no hub access. The text tower pools its last position (pads included, as SigLIP trains),
the vision tower its attention-pool head; the tokenizer is the torch-free SentencePiece one, wrapped as
SiglipTokenizer wraps it (runtime/spm_tokenizer.py)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, InputError, UnsupportedStudentError, first_line
from .base import Student
from .checkpoint import apply_state_dict, read_state_dict, sha256_of
from .encoders import Tower
from .hf_folder import WEIGHT_FILES, hf_preprocess


def _encode_image(model, pixels):
    return model.vision_model(pixel_values=pixels).pooler_output


def _encode_text(model, ids):
    return model.text_model(input_ids=ids).pooler_output


def load_hf_siglip(folder: Path, raw: dict, *, weights=None, random_init: bool = False) -> Student:
    import torch
    from transformers import SiglipConfig, SiglipModel

    if raw.get("model_type") == "siglip2":
        raise UnsupportedStudentError(
            f"{folder} holds a Siglip2Model: its NaFlex vision tower (patches and a resized position table per image) "
            "is not exported yet; use the open_clip config of the same architecture (open_clip:DIR/open_clip_config.json)"
        )
    try:
        config = SiglipConfig.from_pretrained(folder, local_files_only=True)
        config._attn_implementation = "eager"  # plain matmul-softmax attention traces to portable ONNX
        model = SiglipModel(config).float().eval()
    except Exception as e:  # noqa: BLE001 - transformers raise their own validation errors
        raise InputError(
            f"{folder / 'config.json'} is not a valid SigLIP config: building the model failed ({first_line(e, 160)})"
        ) from None
    info = {"architecture": "transformers SiglipModel"}
    if random_init:
        info["random_init"] = True
    else:
        path = Path(weights) if weights else next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
        if path is None:
            raise CheckpointError(f"{folder} has no {' or '.join(WEIGHT_FILES)}; pass --weights FILE")
        state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("position_ids")}
        apply_state_dict(model, state, f"hf:{folder.name}")
        info.update(weights=str(path), weights_sha256=sha256_of(path))
    from .spm_files import load_spm_tokenizer

    tokenizer = load_spm_tokenizer(
        f"hf:{folder.name}",
        [folder],
        context_length=int(config.text_config.max_position_embeddings),
        vocab_size=int(config.text_config.vocab_size),
        clean="none",  # SiglipProcessor calls SiglipTokenizer directly, which canonicalizes on its own
    )
    preprocess = hf_preprocess(folder, int(config.vision_config.image_size))
    with torch.no_grad():
        embed_dim = int(_encode_text(model, torch.from_numpy(tokenizer(["a"]).astype("int64"))).shape[-1])
    return Student(
        id=f"hf:{folder.resolve().name}",
        family="hf",
        image_encoder=Tower(model, _encode_image),
        text_encoder=Tower(model, _encode_text),
        preprocess=preprocess,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        info=info,
    )
