"""open_clip's text cleaning, shared by the CLIP BPE and the SentencePiece tokenizers (torch-free, ftfy lazy)."""

from __future__ import annotations

import html
import string

# Text ftfy provably returns as it is (up to whitespace, which is collapsed next): printable ASCII without
# '&' (ftfy unescapes entities to a fixed point, html.unescape only twice) and without the control
# characters ftfy deletes (\x0b is one). Checked against ftfy on 300,000 random strings
# (tests/test_tokenizer.py repeats a sample). Most queries take this path, so ftfy (~7 MB resident,
# tens of microseconds per call) is imported only when a query needs it.
_FTFY_IDENTITY = frozenset(map(chr, range(0x20, 0x7F))) - {"&"} | set("\t\n\r\x0c")


def clean_basic(text: str) -> str:
    # open_clip's basic_clean: ftfy, double HTML unescape, strip.
    if not _FTFY_IDENTITY.issuperset(text):
        import ftfy

        text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)).strip()


def clean_lower(text: str) -> str:
    # open_clip's 'lower' cleaning: basic_clean, collapse whitespace, lowercase.
    return " ".join(clean_basic(text).split()).strip().lower()


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize(text: str) -> str:
    """open_clip's `clean: canonicalize` (tokenizer._clean_canonicalize): basic clean, then canonicalize_text."""
    text = clean_basic(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split()).strip()
