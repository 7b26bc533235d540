"""The torch-free WordPiece tokenizer against Chinese-CLIP's own (`cn_clip`, installed by scripts/setup.sh with its
real 21,128-token RoBERTa-wwm-ext vocabulary): the tokenizer a Chinese-CLIP student was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import cn_clip.clip as cn_clip  # installed by scripts/setup.sh (--no-deps)
import numpy as np
import pytest

from mcad_export.runtime.wordpiece import WordPieceTokenizer, read_vocab

from .chinese_texts import CAPTIONS, long_texts, random_texts

CONTEXT = 52  # Chinese-CLIP's context length (cn_clip.clip.tokenize's default, its model configs' text length)


def _vocab_file() -> Path:
    from cn_clip.clip import bert_tokenizer

    return Path(bert_tokenizer.default_vocab())


@pytest.fixture(scope="module")
def ours():
    vocab = read_vocab(_vocab_file())
    assert len(vocab) == 21128 and vocab[101] == "[CLS]" and vocab[102] == "[SEP]"
    return WordPieceTokenizer(vocab, context_length=CONTEXT)


def _cn_clip(texts: list[str], context: int = CONTEXT) -> np.ndarray:
    return cn_clip.tokenize(texts, context_length=context).numpy()


def test_chinese_captions_tokenize_as_cn_clip(ours):
    texts = CAPTIONS + random_texts(3000) + long_texts()
    ids, reference = ours(texts), _cn_clip(texts)
    differ = [t for t, a, b in zip(texts, ids, reference) if not np.array_equal(a, b)]
    assert not differ, f"{len(differ)} of {len(texts)} differ, first: {differ[0][:80]!r}"
    # real coverage, not [UNK]s: the captions hit the vocabulary, and 10,000 characters end in [SEP] at the context
    assert not (ids[:14] == ours.unk_token_id).any()  # plain simplified and traditional captions
    assert (ids[: len(CAPTIONS)] == ours.unk_token_id).sum() / (ids[: len(CAPTIONS)] > 102).sum() < 0.06
    assert all(row[-1] == ours.eot_token_id for row in ids[-3:])


def test_traditional_and_simplified_are_different_tokens(ours):
    simplified, traditional = ours(["一只猫坐在沙发上", "一隻貓坐在沙發上"])
    assert (simplified != traditional).sum() == 3  # 只/隻, 猫/貓, 发/發: the vocabulary has both forms
    assert ours.unk_token_id not in traditional


@pytest.mark.parametrize(
    "text, ours_ids, cn_clip_ids",
    [
        # a private-use code point: tokenizers' BertNormalizer drops it (what Hugging Face's BERT tokenizers and
        # this one do), Google's BERT code in cn_clip keeps it inside the word, which becomes [UNK]
        ("a\ue000b", [101, 9386, 102], [101, 100, 102]),
        # CJK Extension E/F ideographs U+2B820-U+2B91F: cn_clip's range table (0x2B820) splits them off as
        # ideographs, tokenizers' (0x2B920) does not
        ("a\U0002b820b", [101, 100, 102], [101, 143, 100, 144, 102]),
        # Unicode 14 punctuation: Python 3.11's tables know it, tokenizers' do not
        ("a\u061db", [101, 100, 102], [101, 143, 100, 144, 102]),
    ],
)
def test_where_cn_clip_and_hugging_face_part_is_known(ours, text, ours_ids, cn_clip_ids):
    """Outside real text the two references part. Swept over all 1,112,032 code points from U+0020 (surrogates
    aside; docs/students.md), 138,227 differ: 137,468 private use, the 256 of that range, 503 from the Unicode
    versions' tables. This tokenizer follows tokenizers (a Hugging Face `ChineseCLIPModel` folder ships a BERT
    tokenizer); these cases pin each class of divergence."""
    from tokenizers.implementations import BertWordPieceTokenizer

    hf = BertWordPieceTokenizer(str(_vocab_file()), lowercase=True)
    n = len(ours_ids)
    assert ours([text])[0][:n].tolist() == ours_ids == hf.encode(text).ids[:n]
    assert _cn_clip([text], 8)[0][: len(cn_clip_ids)].tolist() == cn_clip_ids


def test_java_wordpiece_tokenizes_chinese_as_cn_clip(ours, tmp_path):
    from mcad_export.bundle.golden import write_wordpiece_golden

    from .test_android import CORE, run_core_tests

    texts = CAPTIONS + random_texts(300, seed=3) + long_texts()
    fresh = tmp_path / "wordpiece_zh"
    write_wordpiece_golden(ours, fresh, random_cases=50, extra_texts=texts)
    cases = json.loads((fresh / "tokens.json").read_text(encoding="utf-8"))["cases"]
    by_text = {c["text"]: c["ids"] for c in cases}
    # the vectors the Java core is held to are cn_clip's own ids
    assert all(by_text[t] == row.tolist() for t, row in zip(texts, _cn_clip(texts)))
    passed, failed, out = run_core_tests(CORE / "src" / "test" / "resources" / "golden", fresh)
    assert failed == 0 and passed >= len(cases), out[-3000:]
