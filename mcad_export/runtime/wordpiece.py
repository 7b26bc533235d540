"""Torch-free BERT WordPiece tokenizer, id-for-id identical to Hugging Face's fast BERT tokenizer.

It re-states the `tokenizers` pipeline a BERT `tokenizer.json` describes: special tokens typed in the text
match first (exact case, as `normalized: false` added tokens do), then BertNormalizer (clean text, spaces
around CJK ideographs, accent stripping, lower-casing, each as its config says), BertPreTokenizer
(whitespace, then every punctuation character on its own), greedy longest-match-first WordPiece with
`##` continuations (a word it cannot cover, or longer than `max_input_chars_per_word`, is one [UNK]),
and `[CLS] ... [SEP]` with right truncation and [PAD] to the context length. tests/test_wordpiece.py
compares it with `tokenizers` on tricky and random unicode text.

Reads the contract's `tokenizer/` folder (vocab.txt, one token per line, id = line number;
tokenizer_config.json with `type: wordpiece`), as the Android core does.
"""

from __future__ import annotations

import bisect
import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import regex

from ..contract import TOKENIZER_CONFIG, TOKENIZER_DIR, TOKENIZER_UNICODE_CLASSES, TOKENIZER_WORDPIECE_VOCAB
from ..errors import InputError
from .tokenizer_files import config_int, config_token, need, read_json_file, tokenizer_files

# The ideograph blocks tokenizers' BertNormalizer surrounds with spaces (normalizers/bert.rs, is_chinese_char);
# note 0x2B920, not the 0x2B820 of Google's original Python BERT.
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Which code points tokenizers drops, reads as whitespace, splits off as punctuation or strips as accents,
# measured on every code point (scripts/wordpiece_tables.py). Its Rust category tables predate Python's
# unicodedata (and Java's), so categories are read from this table, never from the host's Unicode version.
TABLES = Path(__file__).resolve().parent / "wordpiece_tables.json"
_CLASSES = ("dropped", "whitespace", "punctuation", "nonspacing_marks")


class UnicodeClasses:
    def __init__(self, table: dict):
        self._ranges = {k: ([lo for lo, _ in table[k]], [hi for _, hi in table[k]]) for k in _CLASSES}
        self._cache: dict[str, tuple[bool, ...]] = {}
        # tokenizers lower-cases character by character with Rust's (newer) case tables: no final-sigma rule.
        self.lowercase = {chr(int(cp)): low for cp, low in table["lowercase"].items()}
        self.not_decomposed = frozenset(map(chr, table["not_decomposed"]))

    def nfd(self, text: str) -> str:
        """NFD, except for the few characters tokenizers' older tables cannot decompose (kept whole)."""
        if not self.not_decomposed.intersection(text):
            return unicodedata.normalize("NFD", text)
        return "".join(c if c in self.not_decomposed else unicodedata.normalize("NFD", c) for c in text)

    def lower(self, text: str) -> str:
        if text.isascii():
            return text.lower()
        get = self.lowercase.get
        return "".join(get(c, c) for c in text)

    @classmethod
    def load(cls, path: Path = TABLES) -> UnicodeClasses:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def of(self, c: str) -> tuple[bool, ...]:
        """(dropped, whitespace, punctuation, nonspacing mark) for one character."""
        flags = self._cache.get(c)
        if flags is None:
            cp = ord(c)
            flags = tuple(_within(*self._ranges[k], cp) for k in _CLASSES)
            if len(self._cache) < 100_000:
                self._cache[c] = flags
        return flags


def _within(starts: list[int], ends: list[int], cp: int) -> bool:
    i = bisect.bisect_right(starts, cp) - 1
    return i >= 0 and cp <= ends[i]


def _is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK)


class WordPieceTokenizer:
    """Callable: list of str -> int32 ids [N, context_length]; `attention_mask(ids)` gives the matching mask."""

    kind = "wordpiece"

    def __init__(
        self,
        vocab: list[str],
        *,
        context_length: int,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        unk_token: str = "[UNK]",
        mask_token: str | None = "[MASK]",
        max_input_chars_per_word: int = 100,
        classes: UnicodeClasses | None = None,
    ):
        self.vocab = vocab
        self.classes = classes or UnicodeClasses.load()
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.context_length = int(context_length)
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.tokens = {"cls": cls_token, "sep": sep_token, "pad": pad_token, "unk": unk_token, "mask": mask_token}
        self.sot_token_id = self.encoder[cls_token]
        self.eot_token_id = self.encoder[sep_token]
        self.pad_token_id = self.encoder[pad_token]
        self.unk_token_id = self.encoder[unk_token]
        specials = sorted({t for t in self.tokens.values() if t and t in self.encoder}, key=len, reverse=True)
        self._specials = regex.compile("(" + "|".join(map(regex.escape, specials)) + ")")
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_artifacts(cls, directory) -> WordPieceTokenizer:
        files, where = tokenizer_files(directory), Path(directory) / TOKENIZER_DIR
        config = read_json_file(need(files, TOKENIZER_CONFIG, where), dict, "a JSON object")
        if config.get("type") != "wordpiece":
            raise InputError(f"{directory}'s tokenizer is {config.get('type')!r}, not WordPiece")
        return cls.from_files(files, config, where)

    @classmethod
    def from_files(cls, files: dict, config: dict, where: Path) -> WordPieceTokenizer:
        """Tokenizer.from_files for `type: wordpiece`: vocab.txt and the Unicode table, both required."""
        vocab_path = need(files, TOKENIZER_WORDPIECE_VOCAB, where)
        try:
            vocab = read_vocab(vocab_path)
        except UnicodeDecodeError:
            raise InputError(f"{vocab_path} is not UTF-8 text; re-export the folder") from None
        if len(set(vocab)) != len(vocab) or not vocab:
            raise InputError(f"{vocab_path} is empty or lists a token twice; re-export the folder")
        table = read_json_file(need(files, TOKENIZER_UNICODE_CLASSES, where), dict, "a Unicode class table")
        try:
            classes = UnicodeClasses(table)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where / TOKENIZER_UNICODE_CLASSES} is not a Unicode class table; re-export") from None
        options = _options(config)
        options["context_length"] = config_int(config, "context_length", where, 3, 4096)
        for key in ("cls", "sep", "pad", "unk"):
            if f"{key}_token" in options:
                options[f"{key}_token"] = config_token(config, f"{key}_token", set(vocab), where)
        for key in ("lowercase", "strip_accents", "tokenize_chinese_chars"):
            if key in options and not isinstance(options[key], bool | None):
                raise InputError(f"{where / TOKENIZER_CONFIG}: {key} is not true/false; re-export the folder")
        if "max_input_chars_per_word" in options:
            options["max_input_chars_per_word"] = config_int(config, "max_input_chars_per_word", where, 1, 10_000)
        try:
            return cls(vocab, **options, classes=classes)
        except KeyError as e:
            raise InputError(f"{where / TOKENIZER_CONFIG}: special token {e} is not in vocab.txt; re-export") from None

    def save(self, directory) -> None:
        """Writes the contract's tokenizer/ folder (read back by from_artifacts and the Android core)."""
        folder = Path(directory) / TOKENIZER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOKENIZER_WORDPIECE_VOCAB).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")
        shutil.copyfile(TABLES, folder / TOKENIZER_UNICODE_CLASSES)
        config = {
            "type": self.kind,
            "context_length": self.context_length,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            **{f"{k}_token": v for k, v in self.tokens.items()},
            "sot_token_id": self.sot_token_id,
            "eot_token_id": self.eot_token_id,
            "pad_token_id": self.pad_token_id,
            "unk_token_id": self.unk_token_id,
            "truncation": "keep_sep_last",
            "attention_mask": "1 up to and including [SEP], 0 on [PAD]",
        }
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    def normalize(self, text: str) -> str:
        of = self.classes.of
        chars = []
        for c in text:
            dropped, space = of(c)[:2]
            if dropped:
                continue
            if space:
                chars.append(" ")
            elif self.tokenize_chinese_chars and _is_cjk(c):
                chars.extend((" ", c, " "))
            else:
                chars.append(c)
        text = "".join(chars)
        if self.strip_accents:
            text = "".join(c for c in self.classes.nfd(text) if not of(c)[3])
        if self.lowercase:
            text = self.classes.lower(text)
        return text

    def words(self, text: str) -> list[str]:
        """BertPreTokenizer: split on whitespace (removed), each punctuation character a word of its own."""
        of = self.classes.of
        out: list[str] = []
        word: list[str] = []
        for c in text:
            _, space, punct, _ = of(c)
            if space or punct:
                if word:
                    out.append("".join(word))
                    word = []
                if punct:
                    out.append(c)
            else:
                word.append(c)
        if word:
            out.append("".join(word))
        return out

    def wordpiece(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token_id]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                token = self.encoder.get(piece)
                if token is not None:
                    ids.append(token)
                    start = end
                    break
            else:
                ids = [self.unk_token_id]
                break
        if len(self._cache) < 50_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without [CLS]/[SEP]."""
        ids = []
        for n, segment in enumerate(self._specials.split(text)):
            if n % 2:  # a special token typed in the text (the split keeps the matches)
                ids.append(self.encoder[segment])
                continue
            for word in self.words(self.normalize(segment)):
                ids.extend(self.wordpiece(word))
        return ids

    def __call__(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), self.context_length), self.pad_token_id, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text)[: self.context_length - 2], self.eot_token_id]
            out[row, : len(ids)] = ids
        return out

    def attention_mask(self, ids: np.ndarray) -> np.ndarray:
        """The contract's mask (runtime.encoders.attention_mask): 1 up to each row's [SEP], so a [PAD] typed inside
        the text stays attended, as in Hugging Face."""
        from .encoders import attention_mask

        return attention_mask(ids)


def read_vocab(path: Path) -> list[str]:
    """vocab.txt: one token per line; the line number is the id (a token may not contain a newline)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f]


def _options(config: dict) -> dict:
    keys = ("context_length", "lowercase", "strip_accents", "tokenize_chinese_chars", "max_input_chars_per_word")
    out = {k: config[k] for k in keys if k in config}
    out.update(
        {f"{k}_token": config[f"{k}_token"] for k in ("cls", "sep", "pad", "unk", "mask") if f"{k}_token" in config}
    )
    return out
