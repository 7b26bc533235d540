"""The torch-free tokenizer must equal open_clip's tokenize for every input."""

import random
import subprocess
import sys

import numpy as np
import pytest
from open_clip.tokenizer import SimpleTokenizer, default_bpe

from mcad_export.runtime import Tokenizer

TRICKY = [
    "",
    " ",
    "a red circle above a blue square",
    "A RED Circle   above\ta blue\nsquare",
    "Héllo wörld, café naïve façade",
    "emoji 😀🎉👩‍👩‍👧 test",
    "&amp;lt;b&amp;gt; &lt;i&gt; &#39;quoted&#39;",
    "mojibake: Ã©tÃ© cafÃ©",
    "東京の夜景とラーメン",
    "Привет мир",
    "مرحبا بالعالم",
    "don't I'll we've they're",
    "1234567 3.14159 1e-9",
    "<start_of_text> hi <END_OF_TEXT> there",
    "a" * 500,
    " ".join(["word"] * 120),
    "x\u200by zero-width",
    "ﬁ ligature ﬀ",
    "tab\tnew\nline\r\n",
    "!!!???...,,,",
    "\u0000 control \u0007 chars",
    "combining e\u0301 vs é",
    "ＦＵＬＬＷＩＤＴＨ text",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    reference = SimpleTokenizer(context_length=77)
    ours = Tokenizer.from_clip_bpe_gz(default_bpe(), 77)
    folder = tmp_path_factory.mktemp("tok")
    ours.save(folder)
    return reference, Tokenizer.from_folder(folder / "tokenizer")


def test_tricky_strings_identical(pair):
    reference, ours = pair
    got = ours(TRICKY)
    assert got.dtype == np.int32 and got.shape == (len(TRICKY), 77)
    np.testing.assert_array_equal(got, reference(TRICKY).numpy())


def test_truncation_keeps_eot_last(pair):
    _, ours = pair
    ids = ours(["word " * 200])[0]
    assert ids[0] == ours.sot_token_id and ids[-1] == ours.eot_token_id == ids.max()


def test_random_unicode_identical(pair):
    reference, ours = pair
    rng = random.Random(1234)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x370, 0x400),
        range(0x3040, 0x30FF),
        range(0x4E00, 0x4F00),
        range(0x1F300, 0x1F64F),
        range(0x600, 0x6FF),
    ]
    texts = []
    for _ in range(300):
        n = rng.randint(0, 60)
        texts.append("".join(chr(rng.choice(rng.choice(pools))) for _ in range(n)))
    np.testing.assert_array_equal(ours(texts), reference(texts).numpy())


def test_runtime_import_is_torch_free():
    # The whole query path and the bench's query probe, not just the package's __init__.
    code = (
        "import sys; import mcad_export.runtime as r; from mcad_export.runtime.preprocess import preprocess_batch; "
        "import mcad_export.runtime.search, mcad_export.runtime.index, mcad_export.runtime.gallery; "
        "import mcad_export.bench.probe; "
        "heavy = [m for m in ('torch', 'open_clip', 'transformers', 'onnx') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ascii_fast_path_equals_ftfy(pair):
    # clean_lower skips ftfy for printable ASCII without '&' (and without the control chars ftfy deletes);
    # open_clip always runs ftfy, so any text where skipping it matters would differ here.
    reference, ours = pair
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x20, 0x7F) if chr(c) != "&"] + list("\t\n\r\x0c")
    words = ["dog", "it's", "DON'T", "<b>", "lt;", "#39;", "a--b", '"q"', "...", "http://a.b/c?d=e"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50))) for _ in range(1500)]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(500)]
    texts += ["a\x0bb", "x\x7fy", "&amp;amp;amp;lt;", "caf\u00e9"]  # take the ftfy path
    np.testing.assert_array_equal(ours(texts), reference(texts).numpy())


def test_runtime_tokenizer_skips_ftfy_for_plain_ascii():
    code = (
        "import sys; from mcad_export.runtime.tokenizer import clean_lower; clean_lower('a red circle, 2 dogs'); "
        "a = 'ftfy' in sys.modules; clean_lower('caf\\u00e9'); print(a, 'ftfy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["False", "True"], proc.stdout + proc.stderr


def _reference_bpe(ranks: dict, token: str) -> list[str]:
    """open_clip's BPE loop over a plain (first, second) -> rank dict, the table the runtime no longer keeps."""
    word = list(token[:-1]) + [token[-1] + "</w>"]
    while len(word) > 1:
        best = min(zip(word, word[1:]), key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


def test_merge_ranks_without_a_merge_table_match_open_clip_bpe(tmp_path):
    """Ranks live in arrays indexed by the merged token; pairs sharing a result or outside the vocabulary (HF
    merges files can have both) fall back to a dict. BPE must equal the dict-based loop either way."""
    base = Tokenizer.from_clip_bpe_gz(default_bpe(), 77)
    merges = base.merges()
    assert len(merges) == 48894 and merges[:2] == [("i", "n"), ("t", "h")]
    # ("t", "he</w>") collides with ("th", "e</w>") on "the</w>"; ("q", "zx") produces a string not in the vocabulary;
    # ("i", "n") appears twice (the later rank wins, as in open_clip's dict).
    extra = [("t", "he</w>"), ("q", "zx"), ("i", "n")]
    tok = Tokenizer(
        base.encoder,
        [*extra[:2], *merges, extra[2]],
        context_length=77,
        sot_token="<start_of_text>",
        eot_token="<end_of_text>",
    )
    ranks = {pair: rank for rank, pair in enumerate([*extra[:2], *merges, extra[2]])}
    # The first pair to claim "the</w>" keeps the array slot; the later one goes to the dict.
    assert tok._other_merges == {"th e</w>": ranks[("th", "e</w>")], "q zx": 1}
    rng = random.Random(0)
    words = ["the", "then", "qzx", "qzxqzx", "within", "inn", "thinking", "photograph"] + [
        "".join(rng.choice("thenqzxiabcdo") for _ in range(rng.randint(1, 9))) for _ in range(500)
    ]
    for word in words:
        assert tok.bpe(word) == _reference_bpe(ranks, word), word
    # merges.txt round trip: save() writes the pairs back in rank order.
    tok.save(tmp_path)
    assert Tokenizer.from_folder(tmp_path / "tokenizer").merges() == sorted(ranks, key=ranks.get)
