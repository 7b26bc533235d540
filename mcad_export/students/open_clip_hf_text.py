"""open_clip students whose text tower is a Hugging Face model (`text_cfg.hf_model_name`), built offline.

open_clip builds such a tower (hf_model.HFTextEncoder) from the hub's config of the named model and tokenizes with the
hub's tokenizer; here both come from a local folder: the folder `hf_model_name` names when it is a path, else a
folder named after the model's last name part (`xlm-roberta-base/`) beside the open_clip config or the --weights
file, holding the model's config.json and its tokenizer model. open_clip then builds the same modules from that
config (no weights are fetched: they come from --weights), and the tower runs through bert_text.BertTextTower, so the
export re-states it with a finite mask and proves the re-statement against the untouched Hugging Face forward.

Supported: XLM-RoBERTa towers (open_clip's xlm-roberta-base-ViT-B-32, xlm-roberta-large-ViT-H-14 and custom configs),
SentencePiece with fairseq's ids (runtime.spm_tokenizer family `xlmr`); mT5 / T5 encoder towers (mt5-base-ViT-B-32,
mt5-xl-ViT-H-14; t5_text.T5TextTower, family `t5`); NLLB towers (nllb-clip-*; m2m_text.M2M100TextTower, family
`nllb`, the language codes' ids from the folder's tokenizer.json). RoBERTa (GPT-2 byte-level BPE) is refused with
one line.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from ..errors import InputError, UnsupportedStudentError
from .bert_text import read_json

# open_clip's HFTextEncoder poolers -> bert_text.BertTextTower's pooling. cls_pooler reads the transformer's pooler
# (open_clip builds it with add_pooling_layer=True); max_pooler fills the *real* tokens with -inf (hf_model.py) and
# so is no pooling a student could have been trained with.
POOLERS = {"mean_pooler": "mean", "cls_last_hidden_state_pooler": "cls", "cls_pooler": "pooler"}
SUPPORTED_TYPES = {
    "xlm-roberta": "xlmr",
    "mt5": "t5",
    "t5": "t5",
    "m2m_100": "nllb",
}  # model_type -> runtime.spm_tokenizer family
WHY_NOT = {
    "roberta": "its tokenizer is GPT-2's byte-level BPE, which this toolkit does not reproduce",
}
OPEN_CLIP_CONTEXT = 77  # open_clip's DEFAULT_CONTEXT_LENGTH, what HFTokenizer pads to when the config is silent


def uses_hf_text(model_cfg: dict) -> bool:
    return bool(model_cfg.get("text_cfg", {}).get("hf_model_name"))


def text_folder(student: str, hub_name: str, bases: list[Path]) -> Path:
    """The local folder holding the text model's config.json (see the module doc), or one line naming it."""
    wanted = []
    for base in bases:
        named = Path(hub_name).expanduser()
        for candidate in (named if named.is_absolute() else base / named, base / hub_name.rstrip("/").split("/")[-1]):
            if candidate not in wanted:
                wanted.append(candidate)
    for candidate in wanted:
        if (candidate / "config.json").is_file():
            return candidate
    where = " or ".join(str(c) for c in wanted[:2]) or hub_name
    raise InputError(
        f"{student}'s text tower is Hugging Face's {hub_name}, and nothing is downloaded: put its config.json and "
        f"tokenizer (sentencepiece.bpe.model or spiece.model) in {where}"
    )


def localize(student: str, model_cfg: dict, bases: list[Path]) -> tuple[dict, Path, str]:
    """model_cfg with the text model read from its local folder, the folder, and the tokenizer family; refuses text
    towers the export cannot re-state before anything is built."""
    text_cfg = model_cfg["text_cfg"]
    folder = text_folder(student, str(text_cfg["hf_model_name"]), bases)
    model_type = read_json(folder / "config.json", "the text model's config").get("model_type")
    if model_type not in SUPPORTED_TYPES:
        why = WHY_NOT.get(str(model_type), "it is not a Hugging Face text model this toolkit re-states")
        raise UnsupportedStudentError(
            f"{student}: text tower {text_cfg['hf_model_name']} is of type {model_type!r}: {why}; supported are "
            f"{', '.join(SUPPORTED_TYPES)} towers"
        )
    pooler = text_cfg.get("hf_pooler_type", "mean_pooler")
    if pooler not in POOLERS:
        raise UnsupportedStudentError(f"{student}: hf_pooler_type {pooler!r} is not one of {', '.join(POOLERS)}")
    kwargs = text_cfg.get("tokenizer_kwargs", {})
    if kwargs.get("clean", "whitespace") != "whitespace" or kwargs.get("strip_sep_token") or kwargs.get("language"):
        raise UnsupportedStudentError(
            f"{student}: tokenizer_kwargs {kwargs!r}: supported is open_clip's default for Hugging Face tokenizers "
            "(clean: whitespace, separator kept, no language code)"
        )
    local = copy.deepcopy(model_cfg)
    local["text_cfg"].update(hf_model_name=str(folder), hf_model_pretrained=False)
    return local, folder, SUPPORTED_TYPES[model_type]


def text_tower(student: str, model, folder: Path, bases: list[Path], family: str, context_length: int):
    """(BertTextTower over model.text, its SentencePiece tokenizer): call after the weights are in, since the
    tokenizer's contract ids swap two rows of the token table."""
    from .bert_text import BertTextTower
    from .m2m_text import M2M_TYPES, M2M100TextTower
    from .spm_files import load_spm_tokenizer
    from .t5_text import T5_TYPES, T5TextTower

    hf, config = model.text, model.text.config
    pooling = POOLERS[_pooler_name(hf.pooler)]
    if pooling == "pooler" and getattr(hf.transformer, "pooler", None) is None:
        pooling = "cls"  # ClsPooler falls back to the [CLS] row when the transformer has no pooler
    if config.model_type in T5_TYPES:
        tower = T5TextTower(hf.transformer, pooling, hf.proj)
    elif config.model_type in M2M_TYPES:
        tower = M2M100TextTower(hf.transformer, pooling, hf.proj)
    else:
        tower = BertTextTower(hf.transformer, pooling, hf.proj)
    # relative positions (T5) have no table to run out of; NLLB's start at padding_idx + 1
    positions = getattr(config, "max_position_embeddings", None) or context_length + tower.position_offset
    limit = int(positions) - tower.position_offset - (2 if config.model_type in M2M_TYPES else 0)
    if context_length > limit:
        raise InputError(
            f"{student}: context_length {context_length} needs more positions than the text model's "
            f"{config.max_position_embeddings} (max {limit})"
        )
    tokenizer = load_spm_tokenizer(
        student,
        [folder, *bases],
        context_length=context_length,
        vocab_size=int(config.vocab_size),
        clean="whitespace",
        hub_name=str(folder.name),
        family=family,
    )
    if getattr(tokenizer, "swap", False):
        from ..runtime.spm_tokenizer import CONTRACT_SWAP

        tower.swap_rows(CONTRACT_SWAP)
    return tower, tokenizer


def _pooler_name(pooler) -> str:
    # open_clip's own registry key for the class (hf_model._camel2snake)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(pooler).__name__).lower()
