"""Golden vectors for the Android core: what the Java code must reproduce, written by the toolkit.

`mcad-export golden DIR --out FOLDER` writes, from an export:
- tokens.json: token ids for a varied corpus (captions, unicode, HTML, typography, long texts),
  with open_clip's cleaned text per case, the length bucket a static NPU target runs it on, and
  the cases the Java cleaner is known not to match;
- preprocess/: sample images (PNG) and their float32 tensors after the manifest's preprocessing;
- index/ + topk.json: a small flat gallery index and top-k rows/scores for fixed query embeddings;
- tokenizer/: the export's tokenizer files (large ones gzipped; the core reads .gz transparently).
A WordPiece export gets `write_wordpiece_golden` instead: its tokenizer/ and tokens.json with ids and masks.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import replaced_directory
from ..contract import INDEX_DIR, LENGTH_BUCKETS, TOKENIZER_DIR
from ..manifest import read_manifest
from ..runtime.encoders import pick_bucket

# ftfy repairs mojibake and knows every HTML5 entity; the Java core does neither (android_demo/README.md, "Known gaps").
JAVA_DIVERGENT = {
    "CafÃ© au lait at the beach": "ftfy mojibake repair (fix_encoding)",
    "â€œsmart quotesâ€\x9d on a sign": "ftfy mojibake repair (fix_encoding)",
    "a heart &hearts; drawn in sand": "HTML entity outside the core's table",
}

CORPUS = [
    "a red circle above a blue square",
    "A photo of a DOG playing on the beach!!!",
    "two people riding bicycles",
    "city skyline at night, 2024",
    "it's a cat that's sleeping; they'll wake it",
    "I'M SURE YOU'VE SEEN IT, WE'D",
    "",
    "   ",
    "\t\n  spaces\u00a0and\u2003odd\u3000whitespace  ",
    "café crème brûlée",
    "naïve résumé façade",
    "e\u0301 composed vs \u00e9 precomposed",
    "Straße and STRASSE",
    "İstanbul ve ıspanak",
    "ΟΔΟΣ ΚΑΙ ΣΟΦΟΣ",
    "東京タワーの夜景",
    "한국어 문장입니다",
    "Привет, мир! Съешь же ещё этих булок",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 🐶🐱🚲 and 👩‍👩‍👧 family",
    "flags 🇫🇷🇯🇵",
    "12345 67.89 1,000,000 ½ ² ٣",
    "tom &amp; jerry &lt;3 &quot;quoted&quot; &#39;apos&#39; &#x263A; &eacute;t&eacute;",
    "&amp;amp; double escaped &amp;lt;tag&amp;gt;",
    "<b>bold</b> &amp; tags stay",
    "fish &amp chips",
    "‘curly’ “double” ‚low‛ ʼmodifierʼ",
    "ﬁne ﬂowers ﬀ ﬃ ﬄ ﬆ Ĳssel",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３！",
    "control\x07chars\x1bhere\x7f",
    "c1\x93quoted\x94 and \x96 dash",
    "zero\u200bwidth\u200djoiner",
    "line\r\nbreaks\u2028and\u2029separators",
    "<start_of_text>typed specials<end_of_text>",
    "snake_case-and-kebab/slash\\back",
    "!!!???...,,,;;;",
    "don't won't can't shouldn't've",
    "a" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["a long caption about a crowded market with fruit stalls and people"] * 8),
    "Ünïcödé ÀÉÎÕÜ ąęłńśźż ČŠŽ ğüşöç",
    "ꜰᴀɴᴄʏ ꜱᴍᴀʟʟ ᴄᴀᴘꜱ",
    "𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 math letters",
    "tab\tseparated\tvalues",
    "mixed123numbers456and789letters",
    "www.example.com/path?q=1&x=2",
    "#hashtag @mention $100 50% a+b=c",
    *JAVA_DIVERGENT,
]


# WordPiece-specific cases on top of CORPUS: typed specials, CJK, accents, long words, supplementary planes.
WORDPIECE_CORPUS = [
    "[CLS] typed [SEP] specials [PAD] inside [MASK] and [UNK]",
    "[cls] lower-case is not special",
    "[PAD]",
    "Ångström İstanbul ΣΟΦΙΑ straße",
    "中文分词测试，全角标点。",
    "naïve—dash…ellipsis «quotes»",
    "x" * 101,
    "unaffable unbelievably",
    "$5+3=8 <tag> a|b ^caret `tick` ~tilde",
    "\u00ad soft hyphen \ufeff bom",
    "\u3000ideographic space\u2003em space",
    "𠀀𪜀 extension-b ideographs",
    "Ⅻ ① ²³ ﬃ",
    "\u061d new punctuation",
    "\U00011938 dives akuru",
    "\u1c89 cyrillic tje",
    "\ue000 private use \U000f0000",
    "\u0380 unassigned",
]


def _random_texts(rng, pools: list[range], count: int, longest: int = 40) -> list[str]:
    """count seeded random strings of up to `longest` characters, each character from a randomly chosen pool."""
    return ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, longest))) for _ in range(count)]


def _write_tokens(stage: Path, document: dict) -> None:
    """tokens.json, the Java core's token vectors (UTF-8 as written, indent 0)."""
    (stage / "tokens.json").write_text(json.dumps(document, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


def write_wordpiece_golden(tokenizer, out, *, random_cases: int = 300, extra_texts: Sequence[str] = ()) -> dict:
    """tokenizer/ and tokens.json (text, normalized text, padded ids, attention mask) for the Java WordPiece
    tokenizer: the corpus, the WordPiece cases, `extra_texts` and seeded random strings over many scripts and
    planes."""
    import random

    from ..runtime.encoders import attention_mask

    rng = random.Random(7)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x300, 0x370),
        range(0x370, 0x530),
        range(0x600, 0x700),
        range(0x1C80, 0x1CC0),
        range(0x2000, 0x2070),
        range(0x3000, 0x3100),
        range(0x4E00, 0x4F00),
        range(0xAC00, 0xAD00),
        range(0xFF00, 0xFFF0),
        range(0x1F300, 0x1F650),
        range(0x20000, 0x20100),
        range(0x11900, 0x11960),
        range(0x0, 0x20),
    ]
    texts = list(dict.fromkeys([*CORPUS, *WORDPIECE_CORPUS, *extra_texts]))
    texts += _random_texts(rng, pools, random_cases)
    ids = tokenizer(texts)
    masks = attention_mask(ids)
    with replaced_directory(Path(out), root=Path(out).parent) as stage:
        tokenizer.save(stage)
        cases = [
            {"text": t, "normalized": tokenizer.normalize(t), "ids": row.tolist(), "mask": m.tolist()}
            for t, row, m in zip(texts, ids, masks)
        ]
        _write_tokens(stage, {"type": tokenizer.kind, "context_length": tokenizer.context_length, "cases": cases})
    return {"tokens": len(cases)}


def write_sentencepiece_golden(tokenizer, out, *, random_cases: int = 300) -> dict:
    """tokenizer/ (the .model file and its config) and tokens.json (text, padded ids) for the Java SentencePiece
    tokenizer: the corpus, typed specials, seeded random strings over many scripts and a 10,000-character text."""
    import random

    rng = random.Random(11)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x370, 0x530),
        range(0x590, 0x700),
        range(0x900, 0x980),
        range(0x2000, 0x2070),
        range(0x3000, 0x3100),
        range(0x4E00, 0x4F00),
        range(0xAC00, 0xAD00),
        range(0xFF00, 0xFFF0),
        range(0x1F300, 0x1F650),
        range(0x20000, 0x20100),
    ]
    specials = [v for v in tokenizer.tokens.values() if v]
    if getattr(tokenizer, "swap", False):  # fairseq families: <mask> and (NLLB) the language codes typed in text
        specials += sorted(tokenizer.added_tokens)[:3] + ["<mask>", tokenizer.prefix_token]
    texts = list(dict.fromkeys([*CORPUS, *(f"a {s} photo {s}" for s in specials), "\u2581lead \u2581\u2581x", "A_B"]))
    texts += _random_texts(rng, pools, random_cases)
    # 10,000 characters from scripts ftfy's mojibake repair never touches, so the Java core checks it too
    long_pools = [
        range(0x61, 0x7B),
        range(0x20, 0x21),
        range(0x900, 0x980),
        range(0x4E00, 0x4F00),
        range(0x1F300, 0x1F650),
    ]
    texts.append("".join(chr(rng.choice(rng.choice(long_pools))) for _ in range(10_000)))
    ids = tokenizer(texts)
    # The core's cleaning is ftfy without its mojibake repair (TextCleaner.java): texts that repair changes are
    # reported by the Java test as known divergences, as the CLIP vectors' are.
    divergent = {}
    if tokenizer.clean in ("canonicalize", "whitespace"):
        import ftfy

        divergent = {
            t: "ftfy mojibake repair (fix_encoding)"
            for t in texts
            if ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)
        }
        divergent.update({t: why for t, why in JAVA_DIVERGENT.items() if t in texts})
    with replaced_directory(Path(out), root=Path(out).parent) as stage:
        tokenizer.save(stage)
        cases = [{"text": t, "ids": row.tolist()} for t, row in zip(texts, ids)]
        _write_tokens(
            stage,
            {
                "type": tokenizer.kind,
                "context_length": tokenizer.context_length,
                "cases": cases,
                "java_divergent": divergent,
            },
        )
    return {"tokens": len(cases), "divergent": len(divergent)}


def write_host_table_golden(out, *, vocab: int = 300, width: int = 8, cases: int = 30, seed: int = 0) -> int:
    """token_table.int8.npy + token_table.scales.npy (as compile writes a host token table) and cases.json: seeded
    id sequences with the float32 rows runtime.token_table gathers for them. Returns the case count."""
    from ..contract import HOST_TOKEN_ROWS, HOST_TOKEN_SCALES
    from ..quantize.weight_prep import int8_rows
    from ..runtime.token_table import HostTokenTable

    rng = np.random.default_rng(seed)
    values = rng.normal(0, 0.05, (vocab, width)).astype(np.float32)
    values[7] = 0.0  # an all-zero row: its scale is 1, not 0/127
    rows, scales = int8_rows(values)
    out = Path(out)
    with replaced_directory(out, root=out.parent) as stage:
        np.save(stage / HOST_TOKEN_ROWS, rows)
        np.save(stage / HOST_TOKEN_SCALES, scales)
        table = HostTokenTable.in_folder(stage)
        sequences = [[0], [vocab - 1, 7, 7]] + [
            rng.integers(0, vocab, int(rng.integers(1, 24))).tolist() for _ in range(cases - 2)
        ]
        document = {
            "vocab": vocab,
            "width": width,
            # each float32 value written exactly (as the double it widens to)
            "cases": [
                {"ids": ids, "rows": [float(v) for v in table.gather(np.array(ids)).ravel()]} for ids in sequences
            ],
        }
        (stage / "cases.json").write_text(json.dumps(document) + "\n")
    return len(sequences)


def _exif_cases(pre: Path, image, spec: dict) -> list[dict]:
    """JPEGs stored sideways with an EXIF orientation tag (2..8), as phones write them. The Java core gets the
    JPEG (to read the tag) and its stored pixels as PNG (JPEG decoders differ; the turn must not), and must
    produce what the toolkit's reader (runtime/images.py: exif_transpose) and preprocessing produce."""
    from PIL import Image

    from ..runtime.images import read_image
    from ..runtime.preprocess import preprocess_image

    cases = []
    small = image.resize((60, 40))
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        name = f"exif_orientation_{orientation}"
        small.save(pre / f"{name}.jpg", "JPEG", quality=95, exif=exif.tobytes())
        with Image.open(pre / f"{name}.jpg") as stored:
            stored.convert("RGB").save(pre / f"{name}.png")  # the pixels as stored, before the turn
        upright = read_image(pre / f"{name}.jpg")
        tensor = preprocess_image(upright, spec).astype("<f4")
        tensor.tofile(pre / f"{name}.f32")
        cases.append(
            {
                "png": f"{name}.png",
                "jpeg": f"{name}.jpg",
                "orientation": orientation,
                "tensor": f"{name}.f32",
                "width": upright.size[0],
                "height": upright.size[1],
                "shape": list(tensor.shape),
            }
        )
    return cases


def write_golden(directory, out, *, index_rows: int = 300, queries: int = 24, k: int = 10) -> dict:
    from PIL import Image

    from ..runtime.index import GalleryIndex
    from ..runtime.preprocess import preprocess_image
    from ..runtime.tokenizer import Tokenizer, clean_lower
    from ..runtime.tokenizer_files import tokenizer_files

    root = Path(directory)
    manifest = read_manifest(root)
    tokenizer_dir = tokenizer_files(root, manifest)  # listed, inside the export, digest-checked
    tokenizer = Tokenizer.from_artifacts(root, manifest)
    if tokenizer.kind == "wordpiece":
        return write_wordpiece_golden(tokenizer, out)
    if tokenizer.kind == "sentencepiece":
        return write_sentencepiece_golden(tokenizer, out)
    from ..bench import GENERIC_QUERIES

    texts = list(dict.fromkeys([*CORPUS, *GENERIC_QUERIES]))
    with replaced_directory(Path(out), root=Path(out).parent) as stage:
        (stage / TOKENIZER_DIR).mkdir()
        for f in tokenizer_dir.values():
            if f.stat().st_size > 100_000:
                with gzip.GzipFile(stage / TOKENIZER_DIR / (f.name + ".gz"), "wb", mtime=0) as gz:
                    gz.write(f.read_bytes())
            else:
                shutil.copyfile(f, stage / TOKENIZER_DIR / f.name)
        ids = tokenizer(texts)
        lengths = [min(len(tokenizer.encode(t)) + 2, tokenizer.context_length) for t in texts]
        # "bucket": the static length bucket an NPU target runs the query on (None: the full-context encoder).
        cases = [
            {"text": t, "clean": clean_lower(t), "ids": row[:n].tolist(), "bucket": pick_bucket(LENGTH_BUCKETS, n)}
            for t, row, n in zip(texts, ids, lengths)
        ]
        _write_tokens(
            stage,
            {
                "context_length": tokenizer.context_length,
                "pad_token_id": tokenizer.pad_token_id,
                "length_buckets": list(LENGTH_BUCKETS),
                "cases": cases,
                "java_divergent": JAVA_DIVERGENT,
            },
        )

        pre = stage / "preprocess"
        pre.mkdir()
        rng = np.random.default_rng(0)
        images = {}
        for name, (w, h) in {
            "landscape_300x200": (300, 200),
            "portrait_50x120": (50, 120),
            "small_20x33": (20, 33),
            "square_64": (64, 64),
            "odd_97x61": (97, 61),
        }.items():
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
            noise = rng.integers(-40, 40, size=(h, w, 3))
            images[name] = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
        gallery = sorted((root / "gallery").glob("*.png"))[:2] if (root / "gallery").is_dir() else []
        for path in gallery:
            images[path.stem] = Image.open(path).convert("RGB")
        pre_cases = []
        for name, image in images.items():
            image.save(pre / f"{name}.png")
            tensor = preprocess_image(image, manifest["image"]).astype("<f4")
            tensor.tofile(pre / f"{name}.f32")
            pre_cases.append(
                {
                    "png": f"{name}.png",
                    "tensor": f"{name}.f32",
                    "width": image.size[0],
                    "height": image.size[1],
                    "shape": list(tensor.shape),
                }
            )
        pre_cases += _exif_cases(pre, images["landscape_300x200"], manifest["image"])
        (pre / "cases.json").write_text(json.dumps({"image": manifest["image"], "cases": pre_cases}, indent=1) + "\n")

        full = GalleryIndex.load(root / INDEX_DIR)
        n = min(index_rows, len(full.paths))
        # Names that must survive paths.txt: a newline, '%', markup brackets and a non-UTF-8 byte.
        odd = ["two\nlines [1] 100%.png", os.fsdecode(b"caf\xe9.png"), "stra\u00dfe/\u65e5\u672c.jpg"]
        paths = (odd + full.paths[len(odd) : n])[:n]
        small = GalleryIndex.build(np.ascontiguousarray(full.embeddings[:n]), paths, "flat")
        small.save(stage / INDEX_DIR)
        # What the Java core decodes (undecodable bytes become U+FFFD there).
        (stage / INDEX_DIR / "paths.expected.json").write_text(
            json.dumps([p.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for p in paths]) + "\n"
        )
        reference = np.load(root / manifest["evaluation"]["reference"])["text_embeds"].astype(np.float32)
        flat = GalleryIndex.load(stage / INDEX_DIR)
        chosen, expected = [], []
        for q in reference:
            scores, rows = flat.search(q[None], k + 1)
            # Java sums in double, numpy in float32: keep queries whose top-k order a rounding step cannot flip.
            if np.min(np.diff(-scores[0])) < 1e-5:
                continue
            chosen.append([float(v) for v in q])
            expected.append([{"row": int(r), "score": float(s)} for r, s in zip(rows[0][:k], scores[0][:k])])
            if len(chosen) == queries:
                break
        (stage / "topk.json").write_text(json.dumps({"k": k, "queries": chosen, "expected": expected}) + "\n")
    return {"tokens": len(cases), "images": len(pre_cases), "index_rows": n, "queries": len(chosen)}
