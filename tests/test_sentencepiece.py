"""The torch-free SentencePiece tokenizer against the reference: the sentencepiece library (the core, id for id) and
the Hugging Face tokenizer class of each family (SiglipTokenizer, GemmaTokenizer), on models trained here with
sentencepiece on a multilingual corpus: unigram and BPE, with and without byte fallback, other normalizers and
whitespace rules, user-defined, control and unused pieces, and a 256k-piece vocabulary."""

import random
import subprocess
import sys

import numpy as np
import pytest

from mcad_export.errors import InputError
from mcad_export.runtime import Tokenizer
from mcad_export.runtime.spm_model import SentencePieceModel
from mcad_export.runtime.spm_tokenizer import SentencePieceTokenizer, canonicalize

from .test_tokenizer import TRICKY

spm = pytest.importorskip("sentencepiece")

WORDS = {
    "en": "a the red blue green small large square circle triangle photo of dog cat on left right above below "
    "street night city people running bicycle".split(),
    "de": "ein rotes Quadrat über blauen Kreis Straße Fußgänger".split(),
    "ru": "фото кошка собака небо город улица красный синий".split(),
    "ar": "صورة قطة كلب سماء مدينة شارع أحمر".split(),
    "he": "תמונה של חתול כלב".split(),
    "hi": "एक लाल नीला बिल्ली कुत्ता".split(),
    "zh": list("一个红色的方块在左边蓝色圆形图片照片猫狗天空城市"),
    "ja": ["東京", "の", "夜景", "ラーメン", "ねこ", "いぬ"],
    "ko": ["사진", "고양이", "개", "하늘"],
    "emoji": ["😀", "🐱", "🚲", "👩\u200d👩\u200d👧", "🇯🇵"],
}


def corpus(path, lines=12_000, seed=0):
    rng = random.Random(seed)
    languages = list(WORDS)
    out = []
    for _ in range(lines):
        words = []
        for _ in range(rng.randint(3, 14)):
            lang = rng.choice(languages) if rng.random() < 0.45 else "en"
            if lang == "zh":
                words.append("".join(rng.choice(WORDS["zh"]) for _ in range(rng.randint(1, 4))))
            else:
                words.append(rng.choice(WORDS[lang]))
        if rng.random() < 0.2:
            words.append(str(rng.randint(0, 99999)))
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "", ",", "?"]))
    path.write_text("\n".join(out), encoding="utf-8")
    return path


# name -> trainer options (plus the corpus); each an independent way a real model differs
MODELS = {
    "unigram_bytes": dict(model_type="unigram", vocab_size=700, byte_fallback=True),
    "unigram_user_control": dict(
        model_type="unigram",
        vocab_size=600,
        normalization_rule_name="nfkc_cf",
        user_defined_symbols=["<img>", "NYC", "▁▁"],
        control_symbols=["<ctl>"],
    ),
    "bpe_gemma_like": dict(
        model_type="bpe",
        vocab_size=900,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
    ),
    "bpe_suffix": dict(model_type="bpe", vocab_size=600, treat_whitespace_as_suffix=True, user_defined_symbols=["NYC"]),
    "siglip_like": dict(
        model_type="unigram",
        vocab_size=800,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
    ),
}


def texts(seed=7, count=400):
    rng = random.Random(seed)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x370, 0x400),
        range(0x400, 0x4FF),
        range(0x590, 0x5FF),  # Hebrew
        range(0x600, 0x6FF),  # Arabic
        range(0x900, 0x97F),
        range(0x3040, 0x30FF),
        range(0x4E00, 0x9FFF),
        range(0xAC00, 0xAD00),
        range(0xFF00, 0xFFEF),  # fullwidth forms: NFKC rewrites them
        range(0x1F300, 0x1FAFF),
    ]
    out = list(TRICKY) + [
        "▁lead ▁▁space",
        "  ",
        "a  b",
        " NYC<img>NYCNYC <ctl> x",
        "<start_of_turn>user hi<end_of_turn>",
    ]
    out += ["a photo</s> of", "<unk> x", "</s>", " </s> a </s>", "<pad>", "<eos> a <bos>", "A_B c-d", "１２３ ①②"]
    for _ in range(count):
        out.append("".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 50))))
    words = [w for ws in WORDS.values() for w in ws]
    out.append(" ".join(rng.choice(words) for _ in range(2500))[:10_000])  # 10,000 characters
    out.append("".join(chr(rng.choice(rng.choice(pools))) for _ in range(10_000)))
    return out


def train(folder, names=tuple(MODELS)) -> dict:
    """SentencePiece models of MODELS trained on the generated corpus: name -> .model path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = corpus(folder / "corpus.txt")
    out = {}
    for name in names:
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(folder / name), minloglevel=2, num_threads=2, **MODELS[name]
        )
        out[name] = folder / f"{name}.model"
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    out = train(folder)
    out.update(edited_models(folder, out))
    return out


def edited_models(folder, trained):
    """Models the trainer does not write: UNUSED pieces (both algorithms) and a 256k-piece vocabulary."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    out = {}
    for name in ("unigram_bytes", "bpe_suffix"):
        proto = pb.ModelProto.FromString(trained[name].read_bytes())
        marked = 0
        for piece in proto.pieces:
            # multi-character pieces become UNUSED: the encoders must skip (unigram) or re-split (BPE) them
            if piece.type == pb.ModelProto.SentencePiece.NORMAL and len(piece.piece) > 2 and marked < 60:
                piece.type = pb.ModelProto.SentencePiece.UNUSED
                marked += 1
        path = folder / f"{name}_unused.model"
        path.write_bytes(proto.SerializeToString())
        out[f"{name}_unused"] = path
    # 256k: the trained unigram model plus generated multilingual pieces (scores below every trained one), the size
    # of SigLIP 2's Gemma vocabulary, so the table and the lookups are exercised at full scale
    proto = pb.ModelProto.FromString(trained["unigram_bytes"].read_bytes())
    seen = {p.piece for p in proto.pieces}
    low = min(p.score for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL)
    rng = random.Random(256)
    alphabet = [c for ws in WORDS.values() for w in ws for c in w if c != "\u200d"] + list("abcdefghijklmnopqrstuvwxyz")
    while len(proto.pieces) < 256_000:
        piece = ("▁" if rng.random() < 0.5 else "") + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7)))
        if piece not in seen:
            seen.add(piece)
            proto.pieces.add(piece=piece, score=low - rng.random() * 5, type=pb.ModelProto.SentencePiece.NORMAL)
    path = folder / "unigram_256k.model"
    path.write_bytes(proto.SerializeToString())
    out["unigram_256k"] = path
    return out


ALL_MODELS = [*MODELS, "unigram_bytes_unused", "bpe_suffix_unused", "unigram_256k"]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_core_equals_the_library(models, name):
    reference = spm.SentencePieceProcessor(model_file=str(models[name]))
    ours = SentencePieceModel(models[name].read_bytes())
    assert len(ours) == reference.get_piece_size()
    cases = texts()
    differing = [t for t in cases if ours.encode(t) != reference.encode(t)]
    assert not differing, f"{len(differing)} of {len(cases)} differ, e.g. {differing[0][:80]!r}"
    # the reference really segments (not all-unknown): most ids are neither unk nor bytes
    ids = [i for t in cases[:60] for i in reference.encode(t)]
    assert len(set(ids)) > 50


def test_the_256k_table_is_compact_and_fast(models):
    import time

    ours = SentencePieceModel(models["unigram_256k"].read_bytes())
    assert len(ours) == 256_000
    # ~13 bytes a piece besides the UTF-8 text, not a ~150-byte dict entry
    per_piece = ours.table.resident_bytes() / len(ours)
    assert per_piece < 40, per_piece
    query = "a photo of a red square above a blue circle on the left"
    ours.encode(query)
    started = time.perf_counter()
    for _ in range(20):
        ours.encode(query)
    per_query_ms = (time.perf_counter() - started) / 20 * 1e3
    assert per_query_ms < 20, per_query_ms  # a ~1 ms operation; generous for a loaded CI core


def _siglip_hf(path, context):
    from transformers import SiglipTokenizer

    return SiglipTokenizer(str(path), model_max_length=context)


def _gemma_hf(folder, path, add_bos, add_eos, side):
    import json
    import shutil

    from transformers import GemmaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / "tokenizer.model")
    config = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": add_bos, "add_eos_token": add_eos}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": side}))
    return GemmaTokenizer.from_pretrained(str(folder))


def _hf_ids(hf, cases, context):
    return np.array([hf(t, padding="max_length", max_length=context, truncation=True).input_ids for t in cases])


@pytest.mark.parametrize("clean", ["none", "canonicalize"])
def test_siglip_family_equals_siglip_tokenizer(models, clean):
    context = 64
    hf = _siglip_hf(models["siglip_like"], context)
    ours = SentencePieceTokenizer(
        models["siglip_like"].read_bytes(), family="siglip", context_length=context, clean=clean
    )
    cases = texts(seed=11, count=250)
    expected = _hf_ids(hf, [canonicalize(t) if clean == "canonicalize" else t for t in cases], context)
    got = ours(cases)
    assert got.dtype == np.int32 and got.shape == (len(cases), context)
    differing = [cases[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not differing, f"{len(differing)} differ, e.g. {differing[0][:80]!r}"
    # the two 10,000-character inputs: cut to fill the context, EOS kept last (SigLIP pads with EOS too)
    for row in got[-2:]:
        assert row[-1] == ours.eos_token_id and (row[:-1] != ours.eos_token_id).all()


@pytest.mark.parametrize("add_bos,add_eos,side", [(True, False, "left"), (False, True, "right"), (True, True, "right")])
def test_gemma_family_equals_gemma_tokenizer(models, tmp_path, add_bos, add_eos, side):
    context = 64
    hf = _gemma_hf(tmp_path / "hf", models["bpe_gemma_like"], add_bos, add_eos, side)
    ours = SentencePieceTokenizer(
        models["bpe_gemma_like"].read_bytes(),
        family="gemma",
        context_length=context,
        clean="none",
        add_bos=add_bos,
        add_eos=add_eos,
        padding_side=side,
    )
    cases = texts(seed=13, count=250)
    expected = _hf_ids(hf, cases, context)
    got = ours(cases)
    differing = [cases[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not differing, f"{len(differing)} differ, e.g. {differing[0][:80]!r}"
    if add_bos:
        assert (got == ours.bos_token_id).any(axis=1).all()


def test_saved_folder_round_trips_through_the_runtime_loader(models, tmp_path):
    ours = SentencePieceTokenizer(
        models["bpe_gemma_like"].read_bytes(), family="gemma", context_length=64, add_bos=True, add_eos=True
    )
    ours.save(tmp_path)
    loaded = Tokenizer.from_folder(tmp_path / "tokenizer")
    assert loaded.kind == "sentencepiece"
    cases = texts(seed=17, count=50)
    np.testing.assert_array_equal(loaded(cases), ours(cases))


def test_canonicalize_equals_open_clip():
    from open_clip.tokenizer import _clean_canonicalize

    cases = texts(seed=19, count=200)
    assert [canonicalize(t) for t in cases] == [_clean_canonicalize(t) for t in cases]


@pytest.mark.parametrize(
    "damage,says",
    [
        (lambda b: b[: len(b) // 3], "is not a SentencePiece model"),
        (lambda b: b"\xff" * 64, "is not a SentencePiece model"),
        (lambda b: b"", "no pieces"),
    ],
)
def test_a_corrupt_model_is_one_line(models, damage, says):
    with pytest.raises(InputError) as error:
        SentencePieceModel(damage(models["unigram_bytes"].read_bytes()), "tokenizer/spiece.model")
    assert says in str(error.value) and "\n" not in str(error.value)


def test_query_path_stays_torch_free(models):
    code = (
        "import sys; from mcad_export.runtime.spm_tokenizer import SentencePieceTokenizer as T; "
        f"t = T(open({str(models['siglip_like'])!r}, 'rb').read(), family='siglip', context_length=64); "
        "t(['a photo of a cat']); print(sorted(m for m in ('torch', 'sentencepiece', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("copy_from", ["normal", "control", "empty"])
def test_a_repeated_or_empty_piece_is_refused(models, copy_from):
    """Pieces live in one UTF-8 blob (no Python string per piece); a name given twice, across the normal table and
    the reserved (control / unknown / byte) pieces too, or an empty one, is one line."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto.FromString(models["siglip_like"].read_bytes())
    normal = [i for i, p in enumerate(proto.pieces) if p.type == pb.ModelProto.SentencePiece.NORMAL]
    source = {"normal": proto.pieces[normal[3]].piece, "control": "</s>", "empty": ""}[copy_from]
    proto.pieces[normal[7]].piece = source
    with pytest.raises(InputError, match="has an empty or repeated piece"):
        SentencePieceModel(proto.SerializeToString())


def gemma_tokenizer_json(folder, model_file):
    """tokenizer.json as transformers writes it for a Gemma tokenizer (GemmaTokenizer, then save_pretrained)."""
    import json
    import shutil

    from transformers import GemmaTokenizer

    source = folder / "source"
    source.mkdir(parents=True)
    shutil.copyfile(model_file, source / "tokenizer.model")
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    GemmaTokenizer.from_pretrained(str(source)).save_pretrained(str(folder / "saved"))
    return folder / "saved" / "tokenizer.json"


def test_a_gemma_tokenizer_json_is_rebuilt_piece_for_piece(models, tmp_path):
    """SigLIP 2 folders may ship only tokenizer.json: the SentencePiece model rebuilt from it encodes as the
    library does with the original .model, and as tokenizers does with the JSON, on every test text."""
    from tokenizers import Tokenizer as FastTokenizer

    from mcad_export.students.tokenizer_json import model_bytes

    path = gemma_tokenizer_json(tmp_path, models["bpe_gemma_like"])
    ours = SentencePieceModel(model_bytes(path))
    reference = spm.SentencePieceProcessor(model_file=str(models["bpe_gemma_like"]))
    fast = FastTokenizer.from_file(str(path))
    assert len(ours) == reference.get_piece_size()
    cases = texts()
    differing = [t for t in cases if ours.encode(t) != reference.encode(t)]
    assert not differing, f"{len(differing)} of {len(cases)} differ, e.g. {differing[0][:80]!r}"
    # tokenizers splits added special tokens out of the text (the wrapper's job here): compare the rest
    plain = [t for t in cases if not any(s in t for s in ("<pad>", "<eos>", "<bos>", "<unk>"))]
    assert len(plain) > 400
    assert all(ours.encode(t) == fast.encode(t, add_special_tokens=False).ids for t in plain)


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda j: j["model"].update(type="WordPiece"), "a WordPiece model (a BPE one is read)"),
        (lambda j: j.update(pre_tokenizer={"type": "Metaspace"}), 'the pre-tokenizer {"type": "Metaspace"}'),
        (lambda j: j.update(normalizer={"type": "NFKC"}), 'the normalizer {"type": "NFKC"}'),
        (lambda j: j["model"].update(dropout=0.1), "BPE with dropout"),
        (lambda j: j["model"].update(unk_token="<nope>"), "no unknown token"),
    ],
)
def test_a_tokenizer_json_that_does_not_map_is_one_line(models, tmp_path, edit, says):
    import json

    from mcad_export.students.tokenizer_json import model_bytes

    path = gemma_tokenizer_json(tmp_path, models["bpe_gemma_like"])
    spec = json.loads(path.read_text())
    edit(spec)
    path.write_text(json.dumps(spec))
    with pytest.raises(InputError) as error:
        model_bytes(path)
    message = str(error.value)
    assert says in message and "put the folder's tokenizer.model" in message and "\n" not in message, message


@pytest.mark.parametrize("name", ["unigram_bytes", "unigram_user_control"])
def test_a_unigram_tokenizer_json_is_refused_because_it_does_not_encode_as_its_model(models, tmp_path, name):
    """Why a Unigram tokenizer.json is not rebuilt as the Gemma BPE one is: the file transformers writes for a
    Unigram model (T5Tokenizer's converter; XLM-R's writes the same shape) tokenizes differently from the .model it
    came from (byte fallback dropped; the unknown id taken as 2), so nothing rebuilt from it could equal both the
    library and the Hugging Face class. The folder gets one line asking for the .model instead."""
    import json
    import shutil

    from tokenizers import Tokenizer as FastTokenizer
    from transformers import T5Tokenizer

    from mcad_export.students.spm_files import load_spm_tokenizer

    source, saved, student = tmp_path / "source", tmp_path / "saved", tmp_path / "student"
    source.mkdir()
    shutil.copyfile(models[name], source / "spiece.model")
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))
    T5Tokenizer.from_pretrained(str(source)).save_pretrained(str(saved))
    spec = json.loads((saved / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "Unigram"
    reference, fast = (
        spm.SentencePieceProcessor(model_file=str(models[name])),
        FastTokenizer.from_file(str(saved / "tokenizer.json")),
    )
    plain = [t for t in texts() if "<" not in t]
    differing = [t for t in plain if reference.encode(t) != fast.encode(t, add_special_tokens=False).ids]
    assert len(differing) > len(plain) // 2, f"only {len(differing)} of {len(plain)} differ"
    student.mkdir()
    shutil.copyfile(saved / "tokenizer.json", student / "tokenizer.json")
    with pytest.raises(InputError) as error:
        load_spm_tokenizer("hf:student", [student], context_length=16, vocab_size=len(reference), clean="none")
    message = str(error.value)
    assert "a Unigram model" in message and "spiece.model" in message and "\n" not in message, message
