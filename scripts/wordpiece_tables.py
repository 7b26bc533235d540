"""Regenerates mcad_export/runtime/wordpiece_tables.json: which code points Hugging Face's `tokenizers` treats as
dropped (control/format/private use), whitespace, punctuation and non-spacing marks, and how it
lower-cases, scanned over every code point.

Why a table: tokenizers' Rust category tables are older than Python's unicodedata (~560 code points assigned
since differ), and Java's are different again; one measured table makes the Python and Java tokenizers agree
with tokenizers whatever the host's Unicode version. Run after a tokenizers upgrade:
  .venv/bin/python scripts/wordpiece_tables.py
"""

import json
import unicodedata
from pathlib import Path

import tokenizers
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

OUT = Path(__file__).resolve().parent.parent / "mcad_export" / "runtime" / "wordpiece_tables.json"


def ranges(points):
    out = []
    for cp in points:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def main():
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = BertPreTokenizer()
    lowercase, not_decomposed = {}, []
    classes = {"dropped": [], "whitespace": [], "punctuation": [], "nonspacing_marks": []}
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str(c)
        if cleaned == "":
            classes["dropped"].append(cp)
        elif cleaned == " " and c != " ":
            classes["whitespace"].append(cp)
        stripped = strip.normalize_str(c)
        if stripped == "":
            classes["nonspacing_marks"].append(cp)
        elif stripped == c and unicodedata.normalize("NFD", c) != c:
            not_decomposed.append(cp)  # tokenizers' (older) decomposition tables do not know this one
        lowered = lower.normalize_str(c)
        if lowered != c:
            lowercase[str(cp)] = lowered
        words = [w for w, _ in pre.pre_tokenize_str("x" + c + "x")]
        if words == ["x", c, "x"]:
            classes["punctuation"].append(cp)
        elif words == ["x", "x"]:
            classes["whitespace"].append(cp)
    table = {
        "source": f"tokenizers {tokenizers.__version__}: BertNormalizer and BertPreTokenizer on every code point",
        **{k: ranges(sorted(set(v))) for k, v in classes.items()},
        "lowercase": lowercase,
        "not_decomposed": not_decomposed,
    }
    OUT.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
    print({k: len(v) for k, v in table.items() if k != "source"})


if __name__ == "__main__":
    main()
