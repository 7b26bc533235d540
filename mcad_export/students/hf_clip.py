"""`hf:<DIR>` students: a Hugging Face CLIPModel or VisionTextDualEncoderModel folder (config.json + weights), no hub
access. Dual-encoder folders (a vision tower + a BERT-family text tower) load in dual_encoder.py, SigLIP folders in
hf_siglip.py, Chinese-CLIP folders in hf_chinese_clip.py."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError, UnsupportedStudentError, first_line
from ..runtime.tokenizer import Tokenizer
from .base import Student
from .hf_folder import hf_preprocess, hf_student, load_folder_weights
from .registry import register_loader


def _encode_image(model, pixels):
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def _encode_text(model, ids):
    return model.text_projection(model.text_model(input_ids=ids).pooler_output)


@register_loader("hf")
def load(arg: str, *, weights=None, random_init: bool = False) -> Student:
    student = _load_folder(arg, weights=weights, random_init=random_init)
    # config.json may name the data its student was trained for, as open_clip configs do (a key transformers keeps
    # as an unused attribute), so parity and the gate use held-out scenes whose captions identify their images
    from .open_clip_family import _evaluation_data

    config = str(Path(arg) / "config.json")
    student.sample_kind, student.eval_count = _evaluation_data(config, student.sample_kind, student.eval_count)
    return student


def _load_folder(arg: str, *, weights=None, random_init: bool = False) -> Student:
    from transformers import CLIPConfig, CLIPModel

    folder = Path(arg)
    if not arg or not folder.is_dir():
        raise InputError(
            f"hf student needs a local CLIPModel folder: --student hf:DIR ({arg or 'missing'} is not a folder)"
        )
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} has no config.json; expected a Hugging Face CLIPModel folder (save_pretrained)")
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(f"{folder / 'config.json'} is not valid JSON{where}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{folder / 'config.json'} is not a Hugging Face config (a JSON object expected)")
    if raw.get("model_type") == "vision-text-dual-encoder":
        from .dual_encoder import load_hf_dual_encoder

        return load_hf_dual_encoder(folder, raw, weights=weights, random_init=random_init)
    if raw.get("model_type") in ("siglip", "siglip2"):
        from .hf_siglip import load_hf_siglip

        return load_hf_siglip(folder, raw, weights=weights, random_init=random_init)
    if raw.get("model_type") == "chinese_clip":
        from .hf_chinese_clip import load_hf_chinese_clip

        return load_hf_chinese_clip(folder, raw, weights=weights, random_init=random_init)
    if raw.get("model_type") != "clip":
        raise UnsupportedStudentError(
            f"{folder} holds a {raw.get('model_type')!r} model, not a dual encoder; "
            "supported: CLIPModel, SiglipModel, Siglip2Model, ChineseCLIPModel and VisionTextDualEncoderModel folders"
        )
    try:
        config = CLIPConfig.from_pretrained(folder, local_files_only=True)
        config._attn_implementation = "eager"  # plain matmul-softmax attention traces to portable ONNX
        model = CLIPModel(config).float().eval()
    except Exception as e:  # noqa: BLE001 - transformers/huggingface_hub raise their own validation errors
        reason = first_line(e, 160)
        raise InputError(
            f"{folder / 'config.json'} is not a valid CLIP config: building the model failed ({reason})"
        ) from None
    info = {"architecture": "transformers CLIPModel"}
    if random_init:
        info["random_init"] = True
    else:
        load_folder_weights(model, folder, weights, info)
    tokenizer = _tokenizer(folder, config)
    preprocess = hf_preprocess(folder, int(config.vision_config.image_size))
    return hf_student(folder, model, _encode_image, _encode_text, preprocess, tokenizer, info)


def _tokenizer(folder: Path, config) -> Tokenizer:
    from ..runtime.tokenizer import read_merges

    context = int(config.text_config.max_position_embeddings)
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if vocab.is_file() and merges.is_file():
        encoder = json.loads(vocab.read_text(encoding="utf-8"))
        return Tokenizer(
            encoder, read_merges(merges), context_length=context, sot_token="<|startoftext|>", eot_token="<|endoftext|>"
        )
    if config.text_config.vocab_size == 49408:
        # CLIP checkpoints share OpenAI's BPE vocabulary, which open_clip ships offline.
        import open_clip

        return Tokenizer.from_clip_bpe_gz(open_clip.tokenizer.default_bpe(), context)
    raise InputError(
        f"{folder} has no vocab.json/merges.txt and a non-CLIP vocabulary "
        f"({config.text_config.vocab_size} tokens); add the tokenizer files to the folder"
    )
