"""The torch-free WordPiece tokenizer must equal Hugging Face's fast BERT tokenizer for every input."""

import random

import numpy as np
import pytest

from mcad_export.runtime import Tokenizer
from mcad_export.runtime.encoders import attention_mask
from mcad_export.runtime.wordpiece import WordPieceTokenizer, read_vocab
from mcad_export.students.bert_text import minilm_folder

from .test_tokenizer import TRICKY

CONTEXT = 32
BERT_TRICKY = TRICKY + [
    "[CLS] typed [SEP] specials [PAD] inside [MASK] and [UNK]",
    "[cls] lower-case is not special",
    "[PAD]",
    "Ångström İstanbul ΣΟΦΙΑ straße",
    "中文分词测试，全角标点。",
    "naïve—dash…ellipsis «quotes»",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 101,
    "unaffable unbelievably",
    "$5+3=8 <tag> a|b ^caret `tick` ~tilde",
    "\u00ad soft hyphen \ufeff bom \u200d zwj",
    "\ufffd replacement",
    "\u3000ideographic space\u2003em space\u00a0nbsp",
    "𠀀𪜀 extension-b ideographs",
    "Ⅻ ① ²³ ﬃ",
]


def _reference(lowercase: bool, strip_accents):
    """Hugging Face's fast tokenizer (the `tokenizers` library): the model's own tokenizer.json when uncased,
    tokenizers' BertWordPieceTokenizer over the same vocabulary for the cased settings."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    folder = minilm_folder()
    if lowercase:
        reference = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    else:
        reference = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=False, strip_accents=strip_accents)
    reference.enable_truncation(max_length=CONTEXT)
    reference.enable_padding(length=CONTEXT, pad_id=0, pad_token="[PAD]")
    return reference


def _encode(reference, texts):
    out = reference.encode_batch(texts)
    return np.array([e.ids for e in out]), np.array([e.attention_mask for e in out])


@pytest.fixture(scope="module", params=[(True, None), (False, False)], ids=["uncased", "cased"])
def pair(request, tmp_path_factory):
    lowercase, strip = request.param
    ours = WordPieceTokenizer(
        read_vocab(minilm_folder() / "vocab.txt"), context_length=CONTEXT, lowercase=lowercase, strip_accents=strip
    )
    folder = tmp_path_factory.mktemp("wp")
    ours.save(folder)
    return _reference(lowercase, strip), Tokenizer.from_folder(folder / "tokenizer")


def test_tricky_strings_identical(pair):
    reference, ours = pair
    assert isinstance(ours, WordPieceTokenizer)
    ids, mask = _encode(reference, BERT_TRICKY)
    got = ours(BERT_TRICKY)
    assert got.dtype == np.int32 and got.shape == (len(BERT_TRICKY), CONTEXT)
    np.testing.assert_array_equal(got, ids)
    np.testing.assert_array_equal(ours.attention_mask(got), mask)


def test_random_unicode_identical(pair):
    reference, ours = pair
    rng = random.Random(4321)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x300, 0x370),
        range(0x370, 0x400),
        range(0x3000, 0x30FF),
        range(0x4E00, 0x4F00),
        range(0xAC00, 0xAD00),
        range(0x1F300, 0x1F64F),
        range(0x600, 0x6FF),
        range(0x2000, 0x2070),
        range(0xFF00, 0xFFEF),
        range(0x0, 0x20),
    ]
    texts = ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 40))) for _ in range(400)]
    ids, mask = _encode(reference, texts)
    np.testing.assert_array_equal(ours(texts), ids)
    np.testing.assert_array_equal(attention_mask(ours(texts)), mask)


def test_truncation_keeps_sep_last(pair):
    _, ours = pair
    ids = ours(["word " * 200])[0]
    assert ids[0] == ours.sot_token_id and ids[-1] == ours.eot_token_id and (ids != ours.pad_token_id).all()


def test_every_code_point_normalizes_and_splits_as_tokenizers(pair):
    """Normalization and word splitting over all of Unicode, in chunks (the table-driven categories)."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    reference, ours = pair
    normalizer, pre = reference.normalizer, BertPreTokenizer()
    points = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    for start in range(0, len(points), 2048):
        # "x" between code points keeps combining marks from reordering across neighbours in NFD
        text = "x".join(map(chr, points[start : start + 2048]))
        normalized = normalizer.normalize_str(text)
        assert ours.normalize(text) == normalized, hex(points[start])
        assert ours.words(normalized) == [w for w, _ in pre.pre_tokenize_str(normalized)], hex(points[start])


def test_bad_vocabularies_are_refused(tmp_path):
    from mcad_export.errors import InputError
    from mcad_export.students.bert_text import wordpiece_tokenizer

    vocab = read_vocab(minilm_folder() / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in vocab if t != "[UNK]"), encoding="utf-8")
    with pytest.raises(InputError, match=r"has 30521 tokens but the text tower's embedding table has 30522 rows"):
        wordpiece_tokenizer(tmp_path, 16, len(vocab))
    with pytest.raises(InputError, match=r"has no \[UNK\] token"):
        wordpiece_tokenizer(tmp_path, 16, len(vocab) - 1)
