"""A SigLIP-family or multilingual (XLM-R, mT5, NLLB) student's SentencePiece tokenizer, found in a local folder (nothing is downloaded).

open_clip's SigLIP configs name a Hugging Face tokenizer (`hf_tokenizer_name`) that open_clip would download; here
the same files come from the folder the student came from: the open_clip config's folder (the hub layout:
open_clip_config.json beside tokenizer.model and tokenizer_config.json), the --weights file's folder, or a
Hugging Face model folder. The family (SiglipTokenizer's wrapping or GemmaTokenizer's) and its BOS/EOS/padding come
from tokenizer_config.json when the folder has one, else from the class defaults of the vocabulary's family.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..runtime.spm_model import piece_count
from ..runtime.spm_tokenizer import SentencePieceTokenizer

MODEL_NAMES = ("spiece.model", "tokenizer.model", "sentencepiece.model", "sentencepiece.bpe.model")
CONFIG_NAME = "tokenizer_config.json"
MAX_MODEL_BYTES = 64 << 20  # Gemma's 256k model is 4.2 MB
BPE_JSON = "a BPE model"  # read on its own (students/tokenizer_json.py) when the folder has no .model file
# tokenizer_class -> family; the classes' own defaults (transformers 5) where the folder's config is silent
FAMILY_OF_CLASS = {
    "SiglipTokenizer": "siglip",
    "T5Tokenizer": "siglip",
    "T5TokenizerFast": "siglip",
    "GemmaTokenizer": "gemma",
    "GemmaTokenizerFast": "gemma",
    "XLMRobertaTokenizer": "xlmr",
    "XLMRobertaTokenizerFast": "xlmr",
    "NllbTokenizer": "nllb",
    "NllbTokenizerFast": "nllb",
}
DEFAULTS = {
    "siglip": {"add_bos": False, "add_eos": True, "padding_side": "right"},
    "gemma": {"add_bos": True, "add_eos": False, "padding_side": "left"},
    "xlmr": {"add_bos": True, "add_eos": True, "padding_side": "right"},
    "t5": {"add_bos": False, "add_eos": True, "padding_side": "right"},
    "nllb": {"add_bos": True, "add_eos": True, "padding_side": "right"},
}
# mT5 pads its token table past the model's pieces (250,100 pieces, 250,112 rows): rows no id reaches
PADDED_TABLE = {"t5": 1024}
# the classes whose templates are fixed: they take no add_bos_token / add_eos_token / padding_side settings
FIXED_TEMPLATES = ("xlmr", "t5", "nllb")
# rows a family's ids need beyond the model's pieces: XLM-R's fairseq dictionary shifts them up one and adds <mask>
EXTRA_ROWS = {"xlmr": 2}


def find_model_file(folders: list[Path]) -> Path | None:
    for folder in folders:
        for name in MODEL_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _tokenizer_json_kind(path: Path) -> str:
    """What a tokenizers-library tokenizer.json holds, for the error line: its model type, or why it is unreadable."""
    if path.stat().st_size > MAX_MODEL_BYTES * 8:
        return "too large to read"
    try:
        model = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
        kind = model.get("type") if isinstance(model, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return "not valid JSON"
    if kind == "BPE":
        return BPE_JSON
    if kind == "Unigram":
        # Not rebuilt, unlike BPE: transformers' Unigram converters (T5, XLM-R) write files that do not encode as
        # their .model does (byte fallback dropped, the unknown id fixed at 2; measured in tests/test_sentencepiece.py),
        # so a model rebuilt from one could not equal both the library and the Hugging Face class.
        return (
            f"a {kind} model, which transformers' converters write without the .model's byte fallback and unknown id; "
            "its SentencePiece .model file is what this toolkit reads"
        )
    return f"a {kind or 'typeless'} model, not a SentencePiece tokenizer"


def load_spm_tokenizer(
    student: str,
    folders: list[Path],
    *,
    context_length: int,
    vocab_size: int,
    clean: str,
    hub_name: str | None = None,
    family: str | None = None,
) -> SentencePieceTokenizer:
    """The student's tokenizer from the first folder holding a SentencePiece model file; one line if none does or
    if it does not fit the student's token table. `family`: the student's (an XLM-R tower's is `xlmr`) when the
    folder's tokenizer_config.json does not name its class."""
    path, data = find_model_file(folders), None
    if path is None:
        where = " or ".join(str(f) for f in folders) or "the student's folder"
        source = f" (from {hub_name})" if hub_name else ""
        json_only = [f / "tokenizer.json" for f in folders if (f / "tokenizer.json").is_file()]
        kind = _tokenizer_json_kind(json_only[0]) if json_only else ""
        if kind == BPE_JSON:  # SigLIP 2's Gemma tokenizer as transformers writes it: rebuilt exactly, or one line
            from .tokenizer_json import model_bytes

            path, data = json_only[0], model_bytes(json_only[0])
        else:
            extra = f"; {json_only[0]} ({kind}) alone is not enough" if json_only else ""
            raise InputError(
                f"{student} needs its SentencePiece tokenizer{source}, and nothing is downloaded: put "
                f"{' or '.join(MODEL_NAMES[:2])} (and its {CONFIG_NAME}) in {where}{extra}"
            )
    elif path.stat().st_size > MAX_MODEL_BYTES:
        raise InputError(f"{path} is {path.stat().st_size} bytes, too large for a SentencePiece model")
    config_path = path.parent / CONFIG_NAME
    config: dict = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{config_path} is not valid JSON; use the file that came with the tokenizer") from None
        if not isinstance(config, dict):
            raise InputError(f"{config_path} is not a JSON object; use the file that came with the tokenizer")
    data = path.read_bytes() if data is None else data
    named = config.get("tokenizer_class")
    if named is not None and named not in FAMILY_OF_CLASS:
        raise InputError(
            f"{config_path}: tokenizer_class {named!r} is not a SentencePiece family this toolkit reproduces "
            f"({', '.join(sorted(FAMILY_OF_CLASS))})"
        )
    pieces = piece_count(data, str(path))
    if family is None:  # the student's tower decides where it knows (xlmr, t5); else the folder's class
        family = FAMILY_OF_CLASS[named] if named else ("gemma" if pieces >= 200_000 else "siglip")
    added, prefix = _nllb_added_tokens(path.parent, config, pieces) if family == "nllb" else (None, None)
    extra = EXTRA_ROWS.get(family, 0) if added is None else max(added.values()) + 1 - pieces
    if not pieces + extra <= vocab_size < pieces + extra + PADDED_TABLE.get(family, 1):  # before a 256k table
        ids = f" (+{extra} ids of its {family} family)" if extra else ""
        raise InputError(
            f"{path} has {pieces:,} pieces{ids} but {student}'s token table has {vocab_size:,} rows: it is "
            "not this student's tokenizer"
        )
    options = dict(DEFAULTS[family])
    if family not in FIXED_TEMPLATES:
        for key, ours in (("add_bos_token", "add_bos"), ("add_eos_token", "add_eos"), ("padding_side", "padding_side")):
            if key in config:
                options[ours] = config[key]
    beside = path if path.suffix == ".json" else path.parent / "tokenizer.json"
    if family == "gemma" and beside.is_file():  # GemmaTokenizer follows the JSON's template over the config
        from .tokenizer_json import special_tokens_around

        around = special_tokens_around(beside)
        if around is not None:
            options["add_bos"], options["add_eos"] = around
    if not isinstance(options["add_bos"], bool) or not isinstance(options["add_eos"], bool):
        raise InputError(f"{config_path}: add_bos_token / add_eos_token must be true or false")
    if options["padding_side"] not in ("left", "right"):
        raise InputError(f"{config_path}: padding_side must be left or right")
    names = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        if isinstance(value, dict):  # an AddedToken written out
            value = value.get("content")
        if value is not None and not isinstance(value, str):
            raise InputError(f"{config_path}: {key} is not a string")
        names[key] = value
    return SentencePieceTokenizer(
        data,
        family=family,
        context_length=context_length,
        clean=clean,
        add_bos=options["add_bos"],
        add_eos=options["add_eos"],
        padding_side=options["padding_side"],
        do_lower_case=bool(config.get("do_lower_case", True)),
        where=str(path),
        added_tokens=added,
        prefix_token=prefix,
        **names,
    )


def _nllb_added_tokens(folder: Path, config: dict, pieces: int) -> tuple[dict[str, int], str]:
    """An NLLB tokenizer's tokens beyond the model (language codes, <mask>) with the ids its tokenizer.json gives
    them (the hub's numbering; transformers derives it differently when it builds one), and its source language."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise InputError(
            f"{folder} has no tokenizer.json: an NLLB tokenizer's language codes and their ids are read from it "
            "(copy the one that came with the model)"
        )
    if path.stat().st_size > MAX_MODEL_BYTES * 8:
        raise InputError(f"{path} is too large to be a tokenizer")
    try:
        listed = json.loads(path.read_text(encoding="utf-8")).get("added_tokens") or []
        added = {t["content"]: t["id"] for t in listed if isinstance(t, dict) and t.get("id", -1) >= pieces + 1}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        raise InputError(
            f"{path} is not a tokenizers file with added_tokens; copy the one that came with the model"
        ) from None
    language = config.get("src_lang") or "eng_Latn"  # NllbTokenizer's default source language
    if language not in added:
        raise InputError(f"{path}: the source language {language!r} is not one of its added tokens")
    return added, language
