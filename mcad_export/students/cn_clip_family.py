"""`cn_clip:<MODEL>` students: Chinese-CLIP checkpoints as the `cn_clip` package writes them, from local files only.

MODEL is one of cn_clip's released names (ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14, RN50) or its own
`<vision>@<text>` pair of model-config names (`ViT-B-16@RBT3-chinese`); the configs are read from the installed
`cn_clip` package (its model_configs/*.json), never fetched. `--weights` is a released checkpoint or one of its
training checkpoints (`{"epoch", "state_dict", "optimizer"}` with DDP `module.` prefixes, fp16 or fp32, with or
without FlashAttention's fused `Wqkv` keys), loaded with `torch.load(weights_only=True)` or safetensors.

cn_clip's image towers are OpenAI CLIP's (ViT with QuickGELU, or ModifiedResNet) and load into open_clip's; its
text tower is a BERT whose keys are Hugging Face's, so it runs through bert_text.BertTextTower: pooled at [CLS] of
the last hidden state and multiplied by `text_projection`, as `CLIP.encode_text` does, its mask the non-pad ids.
The vocabulary is the `vocab.txt` beside the checkpoint, else the installed package's; images are squashed to the
square input (cn_clip's `image_transform` resizes without cropping).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from torch import nn

from ..errors import InputError, UnsupportedStudentError
from .base import Preprocess, Student
from .bert_text import BertTextTower, read_json, wordpiece_tokenizer
from .checkpoint import apply_state_dict, read_state_dict, sha256_of
from .dual_encoder import DualEncoder, _student
from .hf_folder import CLIP_MEAN, CLIP_STD
from .registry import register_loader

# cn_clip.clip.utils._MODEL_INFO: each released checkpoint's config pair and input size.
RELEASED = {
    "ViT-B-16": "ViT-B-16@RoBERTa-wwm-ext-base-chinese",
    "ViT-L-14": "ViT-L-14@RoBERTa-wwm-ext-base-chinese",
    "ViT-L-14-336": "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese",
    "ViT-H-14": "ViT-H-14@RoBERTa-wwm-ext-large-chinese",
    "RN50": "RN50@RBT3-chinese",
}
CONTEXT = 52  # cn_clip.clip.tokenize's default: the length Chinese-CLIP trains and serves


def cn_clip_package() -> Path:
    """The installed cn_clip's clip/ folder (model_configs/, vocab.txt), found without importing it (torch-heavy)."""
    spec = importlib.util.find_spec("cn_clip")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "cn_clip: students need the cn_clip package for their model configs and vocabulary: "
            "pip install --no-deps cn-clip==1.6.0 (scripts/setup.sh installs it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "clip"


def _configs(name: str) -> tuple[dict, str]:
    """The merged vision + text config. A part is a name in cn_clip's model_configs/ or a path to a .json file in
    the same format (a student of one's own size: cn_clip's trainer reads configs from that folder by name)."""
    struct = RELEASED.get(name, name)
    vision, sep, text = struct.partition("@")
    folder = cn_clip_package() / "model_configs"
    files = [Path(part) if part.endswith(".json") else folder / f"{part}.json" for part in (vision, text)]
    if not sep or not all(f.is_file() for f in files):
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise UnsupportedStudentError(
            f"cn_clip:{name} names no Chinese-CLIP model: use a released name ({', '.join(RELEASED)}) or "
            f"<vision>@<text> from cn_clip's model configs ({', '.join(known)}) or .json files"
        )
    config: dict = {}
    for f in files:
        part = read_json(f, "a cn_clip model config")
        config.update(part)
    if isinstance(config.get("vision_layers"), str):  # "[3,4,6,3]": cn_clip eval()s it; read it as JSON
        config["vision_layers"] = json.loads(config["vision_layers"])
    if "text_hidden_size" not in config or "vision_width" not in config:
        raise UnsupportedStudentError(f"cn_clip:{name}: {vision} must be an image config and {text} a text config")
    return config, struct


def _vision_tower(config: dict) -> nn.Module:
    from open_clip.model import _build_vision_tower

    layers, width = config["vision_layers"], int(config["vision_width"])
    cfg = {"image_size": int(config["image_resolution"]), "layers": layers, "width": width}
    cfg["head_width"] = int(config.get("vision_head_width", 64))
    if not isinstance(layers, list):
        cfg["patch_size"] = int(config["vision_patch_size"])
    return _build_vision_tower(int(config["embed_dim"]), cfg, quick_gelu=True).float().eval()


def _text_model(config: dict):
    from transformers import BertConfig, BertModel

    bert = BertConfig(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["text_hidden_size"]),
        num_hidden_layers=int(config["text_num_hidden_layers"]),
        num_attention_heads=int(config["text_num_attention_heads"]),
        intermediate_size=int(config["text_intermediate_size"]),
        hidden_act=config.get("text_hidden_act", "gelu"),
        max_position_embeddings=int(config["text_max_position_embeddings"]),
        type_vocab_size=int(config.get("text_type_vocab_size", 2)),
        layer_norm_eps=1e-12,
    )
    bert._attn_implementation = "eager"
    return BertModel(bert, add_pooling_layer=False).float().eval()


def _unfuse(state: dict) -> dict:
    """FlashAttention training (`--use-flash-attention`) saves fused `Wqkv` keys; this is cn_clip's convert_state_dict
    run backwards: the ViT's back to in_proj_*, BERT's split into query / key / value, its out_proj back to
    attention.output.dense."""
    out = {}
    for key, value in state.items():
        if ".attn.Wqkv." in key:
            out[key.replace(".attn.Wqkv.", ".attn.in_proj_")] = value
        elif ".attention.self.Wqkv." in key:
            for name, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[key.replace(".Wqkv.", f".{name}.")] = chunk
        elif ".attention.self.out_proj." in key:
            out[key.replace(".attention.self.out_proj.", ".attention.output.dense.")] = value
        else:
            out[key] = value
    return out


@register_loader("cn_clip")
def load(arg: str, *, weights=None, random_init: bool = False) -> Student:
    import torch

    config, struct = _configs(arg)
    embed_dim, hidden = int(config["embed_dim"]), int(config["text_hidden_size"])
    projection = nn.Linear(hidden, embed_dim, bias=False)
    model = DualEncoder(_vision_tower(config), BertTextTower(_text_model(config), "cls", projection))
    parts = [str(Path(part).resolve()) if part.endswith(".json") else part for part in struct.split("@")]
    info = {"architecture": f"cn_clip {struct}", "spec": f"cn_clip:{'@'.join(parts) if arg not in RELEASED else arg}"}
    if random_init:
        info["random_init"] = True
    elif weights is None:
        raise InputError(f"cn_clip:{arg} needs --weights FILE (a cn_clip checkpoint), or --random-init for benchmarks")
    else:
        state = _unfuse(read_state_dict(weights))
        # cn_clip drops BERT's pooler too (create_model / restore_model); logit_scale is training-only
        state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.") and k != "logit_scale"}
        layout = {"visual.": "visual.", "bert.": "text.model."}
        renamed = {}
        for key, value in state.items():
            prefix = next((p for p in layout if key.startswith(p)), None)
            renamed[layout[prefix] + key[len(prefix) :] if prefix else key] = value
        if "text_projection" in renamed:  # cn_clip: x[:, 0] @ text_projection [hidden, embed]; a Linear stores W^T
            renamed["text.projection.weight"] = renamed.pop("text_projection").t().contiguous()
        with torch.no_grad():
            apply_state_dict(model, renamed, f"cn_clip:{arg}")
        info.update(weights=str(weights), weights_sha256=sha256_of(Path(weights)))
    beside = Path(weights).parent if weights is not None else None
    vocab_folder = beside if beside is not None and (beside / "vocab.txt").is_file() else cn_clip_package()
    info["vocabulary"] = str(vocab_folder / "vocab.txt")
    size = int(config["image_resolution"])
    return _student(
        f"cn_clip:{arg}",
        "cn_clip",
        model.visual,
        model.text,
        Preprocess(image_size=size, mean=CLIP_MEAN, std=CLIP_STD, resize_mode="squash", interpolation="bicubic"),
        wordpiece_tokenizer(vocab_folder, CONTEXT, int(config["vocab_size"])),
        embed_dim,
        info,
    )
