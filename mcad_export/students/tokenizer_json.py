"""A SentencePiece model rebuilt from a `tokenizers` tokenizer.json, for folders that ship no `.model` file.

Only the shape transformers' converters write for a SentencePiece BPE (GemmaConverter: SigLIP 2's Gemma tokenizer,
Llama-style with a dummy prefix) is read, because that shape maps onto a ModelProto exactly:
- model: BPE with merges, an unknown token, no dropout / subword prefix / word suffix, optional byte fallback;
- normalizer: Replace(" " -> "▁"), optionally after Prepend("▁") (SentencePiece's dummy prefix); no other rule;
- pre-tokenizer: none, or Split(" ", MergedWithPrevious), which finds no space once the normalizer replaced them.
A merged piece's score is minus the rank of the first merge that makes it (SentencePiece merges the best-scoring
pair; tokenizers the lowest-ranked: the same order), a piece no merge makes scores below every merged one. Added
special tokens become control pieces, other added tokens user-defined ones, `<0xXX>` pieces bytes. Anything else
(Unigram, a precompiled normalizer, Metaspace) is one line asking for the `.model` file, so nothing is guessed.
The result is proved token for token against the sentencepiece library and tokenizers in tests/test_sentencepiece.py.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import InputError
from ..runtime.spm_model import BPE, BYTE, CONTROL, NORMAL, SPACE, UNKNOWN, USER_DEFINED

REPLACE_SPACE = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
PREPEND_SPACE = {"type": "Prepend", "prepend": SPACE}
SPLIT_SPACE = {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _flag(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _piece(text: str, score: float, kind: int) -> bytes:
    return _message(
        1, _message(1, text.encode("utf-8")) + _varint(2 << 3 | 5) + struct.pack("<f", score) + _flag(3, kind)
    )


def model_bytes(path: Path) -> bytes:
    """The ModelProto bytes equivalent to `path` (a tokenizer.json), or InputError naming what does not map."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not valid JSON; use the file that came with the model") from None

    def refuse(what: str):
        raise InputError(
            f"{path}: {what}, which this toolkit does not map onto a SentencePiece model; put the folder's "
            "tokenizer.model (or spiece.model) beside it"
        )

    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        refuse(f"a {model.get('type') if isinstance(model, dict) else 'typeless'} model (a BPE one is read)")
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        refuse("BPE with dropout, a subword prefix or a word suffix")
    normalizer, pre = spec.get("normalizer"), spec.get("pre_tokenizer")
    steps = (
        normalizer.get("normalizers")
        if isinstance(normalizer, dict) and normalizer.get("type") == "Sequence"
        else [normalizer]
    )
    if steps not in ([REPLACE_SPACE], [PREPEND_SPACE, REPLACE_SPACE]):
        refuse(f"the normalizer {json.dumps(normalizer)[:120]}")
    if pre not in (None, SPLIT_SPACE):
        refuse(f"the pre-tokenizer {json.dumps(pre)[:120]}")
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list) or not vocab:
        refuse("a BPE model without its vocab and merges")
    pieces = sorted(vocab, key=vocab.get)
    if [vocab[p] for p in pieces] != list(range(len(pieces))) or any(not p for p in pieces):
        refuse("vocabulary ids that are not 0..N-1 or an empty piece")
    # An added token past the vocabulary (transformers adds `<mask>` to a Gemma tokenizer) has no row in the
    # student's token table; as plain text it is what the student can embed.
    added = {t.get("content"): t for t in spec.get("added_tokens") or [] if isinstance(t, dict)}
    added = {text: token for text, token in added.items() if text in vocab}
    if any(vocab[text] != token.get("id") for text, token in added.items()):
        refuse("an added token whose id is not its vocabulary id")
    unknown = model.get("unk_token")
    if unknown not in vocab:
        refuse("no unknown token in the vocabulary")
    rank: dict[str, int] = {}
    for r, merge in enumerate(merges):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            refuse(f"merge {r} ({str(merge)[:40]}) that is not a pair")
        rank.setdefault(pair[0] + pair[1], r)
    byte_fallback = bool(model.get("byte_fallback"))
    out = bytearray()
    for i, text in enumerate(pieces):
        if text == unknown:
            kind = UNKNOWN
        elif text in added:
            kind = CONTROL if added[text].get("special") else USER_DEFINED
        elif byte_fallback and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            kind = BYTE
        else:
            kind = NORMAL
        score = -float(rank[text]) if text in rank else -float(len(merges) + i)
        out += _piece(text, score if kind == NORMAL else 0.0, kind)
    out += _message(2, _flag(3, BPE) + _flag(35, int(byte_fallback)))
    dummy_prefix = int(steps[0] == PREPEND_SPACE)
    out += _message(3, _message(1, b"identity") + _flag(3, dummy_prefix) + _flag(4, 0) + _flag(5, 1))
    return bytes(out)


def special_tokens_around(path: Path) -> tuple[bool, bool] | None:
    """(BOS before, EOS after) as the tokenizer.json's TemplateProcessing adds them to one text, or None when it
    has no such template. transformers 5's GemmaTokenizer follows this template over tokenizer_config.json's
    add_bos_token / add_eos_token, so a folder that has the file tokenizes that way."""
    try:
        post = json.loads(path.read_text(encoding="utf-8")).get("post_processor")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    single = post.get("single") if isinstance(post, dict) and post.get("type") == "TemplateProcessing" else None
    if not isinstance(single, list):
        return None
    kinds = ["text" if "Sequence" in item else "special" for item in single if isinstance(item, dict)]
    if kinds.count("text") != 1:
        return None
    at = kinds.index("text")
    return "special" in kinds[:at], "special" in kinds[at + 1 :]
