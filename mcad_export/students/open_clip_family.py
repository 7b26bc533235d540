"""`open_clip:<ARCH>` and `open_clip:<config.json>` students with a local weights file."""

from __future__ import annotations

import difflib
import json
import tempfile
from pathlib import Path

from ..errors import InputError, UnknownStudentError, UnsupportedStudentError, first_line
from ..logs import quiet_root_logger
from ..runtime.tokenizer import Tokenizer
from .base import Preprocess, Student
from .checkpoint import apply_state_dict, read_state_dict, sha256_of
from .encoders import Tower
from .open_clip_hf_text import OPEN_CLIP_CONTEXT, localize, uses_hf_text
from .registry import register_loader


def _encode_image(model, pixels):
    return model.encode_image(pixels)


def _encode_text(model, ids):
    return model.encode_text(ids)


@register_loader("open_clip")
def load(arg: str, *, weights=None, random_init: bool = False) -> Student:
    if not arg:
        raise InputError("open_clip student needs an architecture: --student open_clip:ViT-B-32 (or a config .json)")
    if weights is None and not random_init:
        raise InputError(
            f"open_clip:{arg} needs --weights FILE (.pt/.pth/.safetensors); nothing is downloaded. "
            "Use --random-init for an untrained model (benchmarks only)"
        )
    bases = _folders(arg, weights)
    model, preprocess, arch = build_model(arg, bases)
    hf_text = getattr(model, "mcad_hf_text", None)
    tokenizer = None if hf_text else _siglip_tokenizer(arg, arch, model, weights)
    info = {"architecture": arch}
    if random_init:
        info["random_init"] = True
    else:
        apply_state_dict(model, read_state_dict(weights), f"open_clip:{arch}")
        info.update(weights=str(weights), weights_sha256=sha256_of(Path(weights)))
    text_encoder = None
    if hf_text:  # after the weights: the tokenizer's contract ids swap two rows of the token table
        from .open_clip_hf_text import text_tower

        text_encoder, tokenizer = text_tower(f"open_clip:{arch}", model, *hf_text)
        info["text_model"] = str(hf_text[0])
    student = finish(model, preprocess, f"open_clip:{arch}", "open_clip", info, tokenizer, text_encoder)
    if arg.endswith(".json"):
        student.sample_kind, student.eval_count = _evaluation_data(arg, student.sample_kind, student.eval_count)
    return student


EVALUATION_KINDS = ("scenes", "scenes_zh", "scenes_bilingual", "varied")  # data.samples.load_samples


def _evaluation_data(arg: str, kind: str, count: int) -> tuple[str, int]:
    """A config may name the data its student was trained for (`"evaluation": {"samples": "scenes", "count":
    1000}`, a key open_clip ignores), so held-out recall is measured on captions that identify their images."""
    evaluation = json.loads(Path(arg).read_text(encoding="utf-8")).get("evaluation")
    if evaluation is None:
        return kind, count
    if not isinstance(evaluation, dict) or evaluation.get("samples", kind) not in EVALUATION_KINDS:
        raise InputError(f"{arg}: evaluation must be an object whose samples is one of {', '.join(EVALUATION_KINDS)}")
    count = evaluation.get("count", count)
    if isinstance(count, bool) or not isinstance(count, int) or not 8 <= count <= 10_000:
        raise InputError(f"{arg}: evaluation.count must be a whole number from 8 to 10000, got {count!r}")
    return evaluation.get("samples", kind), count


def _folders(arg: str, weights) -> list[Path]:
    """Where a student's side files (tokenizer, a Hugging Face text model) are looked for: the config's folder, then
    the --weights file's."""
    folders = [Path(arg).resolve().parent] if arg.endswith(".json") else []
    if weights is not None:
        folders.append(Path(weights).resolve().parent)
    return folders


def build_model(arg: str, bases: list[Path] | None = None):
    """Random-initialised open_clip model + its preprocess config; nothing is downloaded. A Hugging Face text tower
    is built from its local folder (open_clip_hf_text), found under `bases`; the model then carries
    `mcad_hf_text` (folder, bases, tokenizer family, context length) for the text tower's wrapping."""
    import open_clip

    config_path = Path(arg)
    if arg.endswith(".json"):
        if not config_path.is_file():
            raise InputError(f"open_clip config not found: {arg}")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{arg} is not valid JSON ({e.msg} at line {e.lineno})") from None
        model_cfg = config.get("model_cfg", config) if isinstance(config, dict) else config
        if (
            not isinstance(model_cfg, dict)
            or not isinstance(model_cfg.get("vision_cfg"), dict)
            or not isinstance(model_cfg.get("text_cfg"), dict)
        ):
            raise InputError(
                f"{arg} is not an open_clip model config (a JSON object with vision_cfg and text_cfg objects)"
            )
        preprocess_cfg = config.get("preprocess_cfg", {})
        if not isinstance(preprocess_cfg, dict):
            raise InputError(f"{arg}: preprocess_cfg must be a JSON object")
        _check_sizes(arg, model_cfg)
        try:
            model, pre_cfg = _create_from_config(open_clip, model_cfg, preprocess_cfg, arg, bases or [])
        except (InputError, UnsupportedStudentError):
            raise
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, ZeroDivisionError, AssertionError) as e:
            reason = first_line(e, 160)
            raise InputError(
                f"{arg} is not a valid open_clip model config: building the model failed ({reason})"
            ) from None
        return model, pre_cfg, config_path.stem
    if arg not in open_clip.list_models():
        close = difflib.get_close_matches(arg, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see open_clip.list_models()"
        raise UnknownStudentError(f"unknown open_clip architecture {arg!r}{hint}")
    model_cfg = open_clip.get_model_config(arg)
    _reject_unsupported(arg, model_cfg)
    if uses_hf_text(model_cfg):  # open_clip would fetch the text model's config from the hub
        model, _ = _create_from_config(open_clip, model_cfg, {}, arg, bases or [])
    else:
        model = _quiet_create(open_clip, arg)
    return model, _tag_preprocess(open_clip, arg, model), arg


def _check_sizes(arg: str, model_cfg: dict) -> None:
    """Sizes that must be positive whole numbers, named in the message instead of failing deep inside torch."""
    sizes = [("embed_dim", model_cfg, "embed_dim")]
    for tower in ("vision_cfg", "text_cfg"):
        for key in (
            "layers",
            "width",
            "heads",
            "patch_size",
            "image_size",
            "context_length",
            "vocab_size",
            "head_width",
            "mlp_ratio",
        ):
            if key in model_cfg[tower]:
                sizes.append((f"{tower}.{key}", model_cfg[tower], key))
    for label, cfg, key in sizes:
        if key not in cfg:
            raise InputError(f"{arg}: {label} is missing; an open_clip config needs it")
        value = cfg[key]
        whole = key != "mlp_ratio"
        if isinstance(value, list) and key in ("layers", "image_size") and value:
            value = value if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value) else 1
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (whole and not float(value).is_integer())
            or value <= 0
        ):
            raise InputError(f"{arg}: {label} must be a positive {'whole ' if whole else ''}number, got {value!r}")


def _create_from_config(open_clip, model_cfg: dict, preprocess_cfg: dict, arg: str = "", bases=()):
    # open_clip's public registry is keyed by file stem; register a uniquely named copy so a custom
    # config can never shadow (or be shadowed by) a built-in architecture.
    import hashlib

    name = "mcad-custom-" + hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
    _reject_unsupported(name, model_cfg)
    hf_text = None
    if uses_hf_text(model_cfg):
        student = f"open_clip:{Path(arg).stem if arg.endswith('.json') else arg}"
        model_cfg, folder, family = localize(student, model_cfg, list(bases))
        context = int(model_cfg["text_cfg"].get("context_length", OPEN_CLIP_CONTEXT))
        hf_text = (folder, list(bases), family, context)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(path)
        model = _quiet_create(open_clip, name)
    if hf_text:
        model.mcad_hf_text = hf_text
    pre = dict(model.visual.preprocess_cfg)
    pre.update({k: v for k, v in preprocess_cfg.items() if k in pre})
    return model, pre


def _quiet_create(open_clip, name: str):
    # "No pretrained weights loaded ... initialized randomly" is expected: weights come from --weights.
    with quiet_root_logger():
        return (
            open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False, device="cpu")
            .float()
            .eval()
        )


def is_siglip(model_cfg: dict) -> bool:
    """open_clip's SigLIP family: its own text transformer with a SentencePiece tokenizer named on the hub."""
    text_cfg = model_cfg.get("text_cfg", {})
    clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "lower")
    return bool(text_cfg.get("hf_tokenizer_name")) and not text_cfg.get("hf_model_name") and clean == "canonicalize"


def _reject_unsupported(name: str, model_cfg: dict) -> None:
    text_cfg = model_cfg.get("text_cfg", {})
    if uses_hf_text(model_cfg):  # judged by its local config (open_clip_hf_text.localize)
        if "multimodal_cfg" in model_cfg:
            raise UnsupportedStudentError(f"open_clip:{name} is a captioning (CoCa) model, not a dual encoder")
        return
    if text_cfg.get("hf_tokenizer_name") and not is_siglip(model_cfg):
        raise UnsupportedStudentError(
            f"open_clip:{name} uses a Hugging Face tokenizer ({text_cfg.get('hf_tokenizer_name')}) with open_clip's "
            "own text transformer; supported are CLIP-BPE text towers, SigLIP's (SentencePiece, clean: "
            "canonicalize) and Hugging Face text towers (XLM-R, mT5, NLLB)"
        )
    clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "lower")
    if clean not in ("lower", "canonicalize") or (clean == "canonicalize" and not is_siglip(model_cfg)):
        raise UnsupportedStudentError(
            f"open_clip:{name} uses tokenizer cleaning {clean!r}; supported: 'lower' (CLIP BPE) and 'canonicalize' "
            "(SigLIP's SentencePiece)"
        )
    if "multimodal_cfg" in model_cfg:
        raise UnsupportedStudentError(f"open_clip:{name} is a captioning (CoCa) model, not a dual encoder")


def _siglip_tokenizer(arg: str, arch: str, model, weights):
    """A SigLIP student's SentencePiece tokenizer from its own folder (spm_files), or None for CLIP BPE."""
    import open_clip

    model_cfg = json.loads(Path(arg).read_text(encoding="utf-8")) if arg.endswith(".json") else None
    if model_cfg is not None:
        model_cfg = model_cfg.get("model_cfg", model_cfg)
    else:
        model_cfg = open_clip.get_model_config(arch)
    if not is_siglip(model_cfg):
        return None
    from .spm_files import load_spm_tokenizer

    folders = [Path(arg).resolve().parent] if arg.endswith(".json") else []
    if weights is not None:
        folders.append(Path(weights).resolve().parent)
    text_cfg = model_cfg["text_cfg"]
    return load_spm_tokenizer(
        f"open_clip:{arch}",
        folders,
        context_length=int(text_cfg.get("context_length", 64)),
        vocab_size=int(model.text.token_embedding.num_embeddings),
        clean="canonicalize",
        hub_name=text_cfg.get("hf_tokenizer_name"),
    )


def _tag_preprocess(open_clip, arch: str, model) -> dict:
    # Weights come from a file, so no pretrained tag applies; but an architecture's tags agree on
    # preprocessing (e.g. MobileCLIP's mean 0 / std 1), and the model default would be wrong for them.
    pre = dict(model.visual.preprocess_cfg)
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
        pre.update({k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg})
        break
    return pre


def finish(
    model, pre_cfg: dict, student_id: str, family: str, info: dict, tokenizer=None, text_encoder=None
) -> Student:
    """Reparameterize, wrap the towers, and describe preprocessing + tokenizer for the contract."""
    import open_clip
    import torch
    from timm.utils.model import reparameterize_model

    # MobileCLIP / FastViT train-time branches fold into single convs for inference (and export).
    if any(hasattr(m, "reparameterize") for m in model.modules()):
        model = reparameterize_model(model)
        info["reparameterized"] = True
    model.eval()
    size = pre_cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    preprocess = Preprocess(
        image_size=int(size),
        mean=tuple(pre_cfg["mean"]),
        std=tuple(pre_cfg["std"]),
        resize_mode=pre_cfg.get("resize_mode", "shortest"),
        interpolation=pre_cfg.get("interpolation", "bicubic"),
    )
    context_length = int(getattr(model, "context_length", 0) or model.text.context_length)
    if tokenizer is None:
        tokenizer = Tokenizer.from_clip_bpe_gz(open_clip.tokenizer.default_bpe(), context_length)
    with torch.no_grad():
        probe = torch.from_numpy(tokenizer(["a"]).astype("int64"))
        embed_dim = int((model.encode_text(probe) if text_encoder is None else text_encoder(probe)).shape[-1])
    if text_encoder is None:
        text_encoder = Tower(model, _encode_text, getattr(getattr(model, "text", None), "pool_type", None))
    return Student(
        id=student_id,
        family=family,
        image_encoder=Tower(model, _encode_image),
        text_encoder=text_encoder,
        preprocess=preprocess,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        info=info,
    )
