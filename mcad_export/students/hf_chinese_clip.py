"""`hf:<DIR>` Chinese-CLIP students: a Hugging Face ChineseCLIPModel folder (config.json, weights, vocab.txt or a
WordPiece tokenizer.json), no hub access. The text tower is BERT-shaped (RoBERTa-wwm-ext and its RBT3 cut-down
in OFA-Sys' checkpoints): pooled as ChineseCLIPModel.get_text_features pools it (the last hidden state at [CLS],
not BERT's pooler), projected, L2-normalised; it runs through bert_text.BertTextTower, so the export re-states it
with a finite mask and proves the re-statement against the untouched forward like every BERT-family tower."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, UnsupportedStudentError, first_line
from .base import Student
from .bert_text import BertTextTower, wordpiece_tokenizer
from .encoders import Tower
from .hf_folder import hf_preprocess, load_folder_weights

# Chinese-CLIP trains and serves 52 tokens (cn_clip.clip.tokenize's default and its model configs' text length);
# the folder's max_position_embeddings (512) is the table's size, not the length its captions were trained at.
CHINESE_CLIP_CONTEXT = 52
# The layout BertTextTower.restated_forward re-states: BERT's embeddings and encoder.layer[i] of BertLayer shape.
_TEXT_TYPES = ("chinese_clip_text_model",)


def _encode_image(model, pixels):
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def load_hf_chinese_clip(
    folder: Path, raw: dict, *, weights=None, random_init: bool = False, vocab_folder: Path | None = None
) -> Student:
    """`vocab_folder`: where vocab.txt is when the folder has none (embedded:zh reads the installed cn_clip's)."""
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    try:
        config = ChineseCLIPConfig.from_pretrained(folder, local_files_only=True)
        config._attn_implementation = "eager"  # plain matmul-softmax attention traces to portable ONNX
        for part in (config.text_config, config.vision_config):
            part._attn_implementation = "eager"
        model = ChineseCLIPModel(config).float().eval()
    except Exception as e:  # noqa: BLE001 - transformers raise their own validation errors
        raise InputError(
            f"{folder / 'config.json'} is not a valid Chinese-CLIP config: building the model failed "
            f"({first_line(e, 160)})"
        ) from None
    text_type = config.text_config.model_type
    if text_type not in _TEXT_TYPES or getattr(config.text_config, "position_embedding_type", "absolute") not in (
        None,
        "absolute",
    ):
        raise UnsupportedStudentError(
            f"{folder}: a Chinese-CLIP text tower of type {text_type!r} with "
            f"{getattr(config.text_config, 'position_embedding_type', 'absolute')} positions is not supported "
            "(BERT-shaped towers with absolute positions are)"
        )
    info = {"architecture": "transformers ChineseCLIPModel"}
    if random_init:
        info["random_init"] = True
    else:
        load_folder_weights(model, folder, weights, info)
    context = min(CHINESE_CLIP_CONTEXT, int(config.text_config.max_position_embeddings))
    tokenizer = wordpiece_tokenizer(vocab_folder or folder, context, int(config.text_config.vocab_size))
    return Student(
        id=f"hf:{folder.resolve().name}",
        family="hf",
        image_encoder=Tower(model, _encode_image),
        text_encoder=BertTextTower(model.text_model, "cls", model.text_projection),
        preprocess=hf_preprocess(folder, int(config.vision_config.image_size)),
        tokenizer=tokenizer,
        embed_dim=int(config.projection_dim),
        info=info,
    )
