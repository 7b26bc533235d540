"""Torch-free SentencePiece tokenizer of SigLIP-family students, id for id what the student was trained with.

The core (`spm_model.SentencePieceModel`) equals the sentencepiece library; around it this module reproduces the
Hugging Face tokenizer class of the student's family, because that is what open_clip and transformers call:

- `siglip` (SiglipTokenizer, SigLIP's T5-style vocabulary): special tokens typed in the text are split out first
  (whitespace around them dropped); each other chunk is lower-cased, stripped of ASCII punctuation and has its
  whitespace collapsed, then encoded after an `<unk>` prefix that is cut off again (the class's way of keeping
  sentencepiece from adding its dummy prefix twice); EOS is appended unless the ids already end with it.
- `gemma` (GemmaTokenizer, SigLIP 2's 256k vocabulary): control pieces typed in the text are split out, the rest
  encoded as the model says; BOS / EOS as the folder's `add_bos_token` / `add_eos_token`.
- `xlmr` (XLMRobertaTokenizer, open_clip's XLM-R text towers): fairseq's dictionary around the model: `<s>` 0,
  `<pad>` 1, `</s>` 2, `<unk>` 3, every other piece's id shifted up by one, `<mask>` last; typed specials split out;
  `<s> text </s>`, padded on the right. Behind open_clip's `clean: whitespace` (ftfy, HTML unescape, whitespace
  collapsed, case kept). The contract pads with id 0 (runtime.encoders.real_lengths, the app's TextTokenizer), so
  the ids this class returns swap fairseq's 0 and 1 (`CONTRACT_SWAP`); the student's token table swaps the same two
  rows (students/bert_text.BertTextTower.swap_rows), which leaves every embedding as it was.
- `nllb` (NllbTokenizer, open_clip's NLLB towers): XLM-R's fairseq ids, the folder's added tokens (the language codes
  and `<mask>`, ids as its tokenizer.json numbers them), `[source language code] text </s>`; the same swap.
- `t5` (T5Tokenizer, open_clip's mT5 text towers): the model's own ids (`<pad>` 0, `</s>` 1, `<unk>` 2), `</s>`,
  `<pad>` and `<unk>` typed in the text split out, `text </s>`, padded on the right; `clean: whitespace` in front.
In both, a typed `<pad>` is dropped: open_clip masks every pad id out of attention and pooling, and the contract's
mask covers everything up to the last real token.

In front of either, `clean: canonicalize` is open_clip's text cleaning for SigLIP towers (ftfy, HTML unescape,
`_` to space, ASCII punctuation removed, lower case, whitespace collapsed), so an open_clip student's query is
tokenized exactly as open_clip tokenizes it. Truncation keeps the specials (the text is cut, as `truncation=True`
does); padding goes on the family's side. tests/test_sentencepiece.py proves all of it against the library and the
two Hugging Face classes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..contract import TOKENIZER_CONFIG, TOKENIZER_DIR, TOKENIZER_SPM_MODEL
from ..errors import InputError
from .spm_model import SPACE, SentencePieceModel
from .text_clean import _PUNCTUATION, canonicalize, clean_basic
from .tokenizer_files import MAX_CONTEXT, config_int, need

FAMILIES = ("siglip", "gemma", "xlmr", "t5", "nllb")
FAIRSEQ_FAMILIES = ("xlmr", "nllb")  # fairseq's dictionary around the model, padding at 1: the contract swaps
CLEANS = ("canonicalize", "whitespace", "none")
# XLMRobertaTokenizer's fairseq ids: these four first, then the model's pieces one up, then <mask>
XLMR_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
XLMR_MASK = "<mask>"
CONTRACT_SWAP = (0, 1)  # the fairseq families' contract ids: fairseq's <s> and <pad> exchanged, so padding is id 0
_WHITESPACE = re.compile(r"\s+")


class SentencePieceTokenizer:
    """Callable: list of str -> int32 ids [N, context_length] (the contract's `input_ids`)."""

    kind = "sentencepiece"

    def __init__(
        self,
        model_bytes: bytes,
        *,
        family: str,
        context_length: int,
        clean: str = "canonicalize",
        add_bos: bool = False,
        add_eos: bool = True,
        padding_side: str = "right",
        do_lower_case: bool = True,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        added_tokens: dict[str, int] | None = None,
        prefix_token: str | None = None,
        where: str = "the SentencePiece model",
    ):
        """`added_tokens` / `prefix_token`: the nllb family's tokens beyond the model (token -> fairseq id) and the
        one that starts every text (the source language code)."""
        if family not in FAMILIES or clean not in CLEANS or padding_side not in ("left", "right"):
            raise InputError(f"{where}: family {family!r} / clean {clean!r} / padding_side {padding_side!r} unknown")
        self.model_bytes = model_bytes
        self.model = SentencePieceModel(model_bytes, where)
        self.family, self.clean, self.padding_side = family, clean, padding_side
        self.context_length, self.add_bos, self.add_eos = int(context_length), bool(add_bos), bool(add_eos)
        self.do_lower_case = bool(do_lower_case)
        defaults = {
            "siglip": ("<s>", "</s>", "</s>", "<unk>"),
            "gemma": ("<bos>", "<eos>", "<pad>", "<unk>"),
            "xlmr": ("<s>", "</s>", "<pad>", "<unk>"),
            "nllb": ("<s>", "</s>", "<pad>", "<unk>"),
            "t5": ("<s>", "</s>", "<pad>", "<unk>"),
        }[family]
        names = [t if t is not None else d for t, d in zip((bos_token, eos_token, pad_token, unk_token), defaults)]
        self.tokens = dict(zip(("bos", "eos", "pad", "unk"), names))
        self.swap = family in FAIRSEQ_FAMILIES
        if self.swap:
            self._init_fairseq(where, added_tokens, prefix_token)
            return

        def piece_id(key: str) -> int:
            token = self.model.find(self.tokens[key])
            if token is None:
                raise InputError(
                    f"{where}: its {key} token {self.tokens[key]!r} is not a piece of the model; re-export"
                )
            return token

        self.eos_token_id, self.pad_token_id, self.unk_token_id = piece_id("eos"), piece_id("pad"), piece_id("unk")
        self.bos_token_id = piece_id("bos") if self.add_bos else self.model.find(self.tokens["bos"])
        if family == "siglip":
            specials = {self.tokens["eos"], self.tokens["unk"], self.tokens["pad"]}
            self._unk_prefix = len(self.model.encode(self.tokens["unk"]))
        elif family == "t5":
            specials = {self.tokens["eos"], self.tokens["unk"], self.tokens["pad"]}
        else:
            specials = set(self.model.control_pieces) | {self.tokens["unk"]}
        # typed special tokens, split out of the text before encoding; each is in the model (checked above or
        # taken from its control pieces)
        self._special_ids = {piece: self.model.piece_to_id(piece) for piece in specials}
        # SigLIP's added tokens strip the whitespace around them (AddedToken lstrip/rstrip)
        space = r"\s*" if family == "siglip" else ""
        alternatives = "|".join(map(re.escape, sorted(specials, key=len, reverse=True)))
        self._split = re.compile(space + "(" + alternatives + ")" + space)
        self._space_id = self.model.piece_to_id(SPACE)
        self.sot_token_id = self.bos_token_id if self.add_bos else None
        self.eot_token_id = self.eos_token_id

    def _init_fairseq(self, where: str, added: dict[str, int] | None, prefix: str | None) -> None:
        if [self.tokens[k] for k in ("bos", "eos", "pad", "unk")] != ["<s>", "</s>", "<pad>", "<unk>"]:
            raise InputError(f"{where}: a fairseq tokenizer's specials are <s> </s> <pad> <unk>; re-export")
        if self.family == "xlmr":
            added, prefix = {XLMR_MASK: len(self.model) + 1}, "<s>"
        shifted = len(self.model) + 1  # the model's pieces, shifted up one
        added = dict(added or {})
        if prefix not in {**XLMR_SPECIALS, **added} or any(
            type(i) is not int or not (shifted <= i < shifted + 65_536) for i in added.values()
        ):
            raise InputError(
                f"{where}: its added tokens must follow the model's {len(self.model):,} pieces and include the "
                f"language code {prefix!r} that starts every text; re-export"
            )
        self.added_tokens, self.prefix_token = added, prefix
        self._special_ids = {**XLMR_SPECIALS, **added}
        self._prefix_id = self._special_ids[prefix]
        self.add_bos = self.add_eos = True
        alternatives = "|".join(map(re.escape, sorted(self._special_ids, key=len, reverse=True)))
        self._split = re.compile("(" + alternatives + ")")
        # reported in contract ids (what __call__ returns); fairseq's are XLMR_SPECIALS
        self.bos_token_id = int(_to_contract(np.array(self._prefix_id)))
        self.pad_token_id = CONTRACT_SWAP[0]
        self.eos_token_id, self.unk_token_id = XLMR_SPECIALS["</s>"], XLMR_SPECIALS["<unk>"]
        self.sot_token_id, self.eot_token_id = self.bos_token_id, self.eos_token_id

    @property
    def vocab_size(self) -> int:
        """Rows of the student's token table these ids index."""
        if self.swap:
            return max(len(self.model) + 1, *(i + 1 for i in self.added_tokens.values()))
        return len(self.model)

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_files(cls, files: dict[str, Path], config: dict, where: Path) -> SentencePieceTokenizer:
        """Tokenizer.from_files for `type: sentencepiece`: spiece.model and the family's settings."""
        path = need(files, TOKENIZER_SPM_MODEL, where)
        data = path.read_bytes()

        def flag(key: str, default: bool) -> bool:
            value = config.get(key, default)
            if not isinstance(value, bool):
                raise InputError(f"{where / TOKENIZER_CONFIG}: {key} is not true/false; re-export the folder")
            return value

        def name(key: str) -> str | None:
            value = config.get(key)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
                raise InputError(f"{where / TOKENIZER_CONFIG}: {key} is not a piece name; re-export the folder")
            return value

        return cls(
            data,
            family=str(config.get("family")),
            clean=str(config.get("clean", "canonicalize")),
            padding_side=str(config.get("padding_side", "right")),
            context_length=config_int(config, "context_length", where, 2, MAX_CONTEXT),
            add_bos=flag("add_bos", False),
            add_eos=flag("add_eos", True),
            do_lower_case=flag("do_lower_case", True),
            bos_token=name("bos_token"),
            eos_token=name("eos_token"),
            pad_token=name("pad_token"),
            unk_token=name("unk_token"),
            added_tokens=_added_tokens(config.get("added_tokens"), where) if config.get("family") == "nllb" else None,
            prefix_token=name("prefix_token"),
            where=str(path),
        )

    def save(self, directory) -> None:
        """Writes the contract's tokenizer/ folder: the model file as it came, and the wrapping as JSON."""
        folder = Path(directory) / TOKENIZER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOKENIZER_SPM_MODEL).write_bytes(self.model_bytes)
        config = {
            "type": self.kind,
            "family": self.family,
            "clean": self.clean,
            "context_length": self.context_length,
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "do_lower_case": self.do_lower_case,
            "padding_side": self.padding_side,
            **{f"{k}_token": v for k, v in self.tokens.items()},
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "unk_token_id": self.unk_token_id,
            "vocab_size": self.vocab_size,
            "model_type": {1: "unigram", 2: "bpe"}[self.model.spec.model_type],
            # the nllb family's language codes and <mask> (fairseq ids), and the code every text starts with
            **({"added_tokens": self.added_tokens, "prefix_token": self.prefix_token} if self.swap else {}),
            "truncation": "text cut so the specials fit",
        }
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    # ----------------------------------------------------------------------------------------------- encoding

    def _siglip_chunk(self, chunk: str) -> list[int]:
        # SiglipTokenizer._tokenize: canonicalize_text, then encode "<unk>" + text and drop the unk's pieces
        if self.do_lower_case:
            chunk = chunk.lower()
        chunk = _WHITESPACE.sub(" ", chunk.translate(_PUNCTUATION)).strip()
        ids = self.model.encode(self.tokens["unk"] + chunk)
        return ids[self._unk_prefix :] if len(ids) >= self._unk_prefix else ids

    def _xlmr_chunk(self, chunk: str) -> list[int]:
        unk = self.model.unk_id
        return [XLMR_SPECIALS["<unk>"] if i == unk else i + 1 for i in self.model.encode(chunk)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without BOS/EOS or padding (fairseq's for `xlmr`, before the contract's swap)."""
        if self.clean == "canonicalize":
            text = canonicalize(text)
        elif self.clean == "whitespace":
            text = " ".join(clean_basic(text).split())
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("the query is not valid Unicode text (it holds a lone surrogate)") from None
        if self.family == "siglip":
            # SiglipTokenizer.tokenize: one SentencePiece space in front, the text's own turned into spaces
            text = SPACE + text.replace(SPACE, " ")
        ids: list[int] = []
        typed: set[int] = set()  # positions of special tokens typed in the text
        for n, chunk in enumerate(self._split.split(text)):
            if n % 2:
                if self.family in (*FAIRSEQ_FAMILIES, "t5") and chunk == self.tokens["pad"]:
                    # open_clip masks every pad id out and RoBERTa's positions skip it, so a typed <pad> changes
                    # nothing; dropped here, as the contract's mask covers everything up to </s>
                    continue
                typed.add(len(ids))
                ids.append(self._special_ids[chunk])
            elif chunk:
                if self.family == "siglip":
                    ids.extend(self._siglip_chunk(chunk))
                else:
                    ids.extend(self._xlmr_chunk(chunk) if self.swap else self.model.encode(chunk))
        if self.family == "siglip" and len(ids) > 1 and 1 in typed and ids[0] == self._space_id:
            ids = ids[1:]  # SiglipTokenizer.tokenize drops a lone leading space piece before a special token
        return ids

    def with_specials(self, ids: list[int]) -> list[int]:
        """The family's specials around ids, the text cut first so they fit the context."""
        room = self.context_length - (1 if self.add_bos else 0)
        if self.swap:  # XLM-R: <s> text </s>; NLLB: <language code> text </s>; in fairseq's ids
            return [self._prefix_id, *ids[: self.context_length - 2], XLMR_SPECIALS["</s>"]]
        if self.family == "siglip":
            # _add_eos_if_not_present: the one special counted when truncating is EOS
            ids = ids[: room - 1] if len(ids) + 1 > room else ids
            out = ids if ids and ids[-1] == self.eos_token_id else [*ids, self.eos_token_id]
        else:
            ids = ids[: room - (1 if self.add_eos else 0)]
            out = [*ids, self.eos_token_id] if self.add_eos else list(ids)
        return [self.bos_token_id, *out] if self.bos_token_id is not None and self.add_bos else out

    def __call__(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        pad = XLMR_SPECIALS["<pad>"] if self.swap else self.pad_token_id
        out = np.full((len(texts), self.context_length), pad, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = self.with_specials(self.encode(text))
            if self.padding_side == "right":
                out[row, : len(ids)] = ids
            else:
                out[row, self.context_length - len(ids) :] = ids
        return _to_contract(out) if self.swap else out


def _to_contract(ids: np.ndarray) -> np.ndarray:
    """Fairseq ids as the contract's: CONTRACT_SWAP's two ids exchanged (an involution: it maps them back too)."""
    a, b = CONTRACT_SWAP
    return np.where(ids == a, b, np.where(ids == b, a, ids)).astype(np.int32)


def _added_tokens(value, where: Path) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > 65_536 or not all(isinstance(k, str) for k in value):
        raise InputError(f"{where / TOKENIZER_CONFIG}: added_tokens is not a token -> id object; re-export the folder")
    return value
