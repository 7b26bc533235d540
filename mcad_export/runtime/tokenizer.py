"""Torch-free CLIP BPE tokenizer, token-for-token identical to open_clip's SimpleTokenizer.

It reads the artifact contract's `tokenizer/` folder (vocab.json, merges.txt,
tokenizer_config.json), the same files the Android core reads, so every consumer of an
export tokenizes from one source of truth. Only numpy and regex are imported up front; ftfy when a
text needs it (see text_clean._FTFY_IDENTITY).
"""

from __future__ import annotations

import json
from array import array
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex

from ..contract import TOKENIZER_CONFIG, TOKENIZER_DIR, TOKENIZER_MERGES, TOKENIZER_VOCAB
from ..errors import InputError
from .text_clean import clean_lower
from .tokenizer_files import MAX_CONTEXT, check_vocab, config_int, config_token, need, read_json_file, tokenizer_files


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP reversible byte->printable-char table; printable bytes map to themselves.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_NOT_A_MERGE = float("inf")


CLIP_SOT, CLIP_EOT = "<start_of_text>", "<end_of_text>"


class Tokenizer:
    """Callable: list of str -> int32 array [N, context_length]."""

    def __init__(
        self,
        encoder: dict[str, int],
        merges: list[tuple[str, str]],
        *,
        context_length: int,
        sot_token: str,
        eot_token: str,
        pad_token_id: int = 0,
    ):
        self.encoder = encoder
        # No merge table: a merge's result is itself a vocabulary entry, so a pair's rank is stored in two
        # flat arrays indexed by the id of `first + second` (rank, and where the pair splits it). open_clip's
        # tuple-keyed dict costs ~11 MB of the query process, a "first second" string-keyed one 5.9 MB, these
        # 0.3 MB. Pairs whose result is not in the vocabulary, or shares it with another pair, go to a small
        # dict (none for CLIP's own vocabulary).
        size = max(encoder.values()) + 1
        self._merge_rank, self._merge_split = array("i", [-1]) * size, array("H", [0]) * size
        self._other_merges: dict[str, int] = {}
        for rank, (a, b) in enumerate(merges):
            token = encoder.get(a + b)
            if token is not None and (self._merge_rank[token] < 0 or self._merge_split[token] == len(a)):
                self._merge_rank[token], self._merge_split[token] = rank, len(a)  # a repeated pair: last rank wins
            else:
                self._other_merges[f"{a} {b}"] = rank
        self.context_length = int(context_length)
        self.sot_token_id = encoder[sot_token]
        self.eot_token_id = encoder[eot_token]
        self.pad_token_id = int(pad_token_id)
        self.byte_encoder = bytes_to_unicode()
        specials = [sot_token, eot_token]
        # Special tokens typed by a user are honoured exactly as open_clip does (they match first).
        self._cache = {t: t for t in specials}
        self._pattern = regex.compile(
            "|".join(map(regex.escape, specials)) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    kind = "clip_bpe"

    @classmethod
    def from_artifacts(cls, directory, manifest: dict | None = None):
        """The export's tokenizer, of the kind its tokenizer_config.json names (CLIP BPE, WordPiece, SentencePiece).
        Every file read is one the manifest lists, inside the export, no link, matching its sha256 (tokenizer_files)."""
        return cls.from_files(tokenizer_files(directory, manifest), Path(directory) / TOKENIZER_DIR)

    @classmethod
    def from_folder(cls, folder):
        """A tokenizer/ folder of your own (no manifest to check it against): tests, tools, Tokenizer.save output."""
        folder = Path(folder)
        return cls.from_files({p.name: p for p in folder.iterdir() if p.is_file()}, folder)

    @classmethod
    def from_files(cls, files: dict[str, Path], where: Path):
        config = read_json_file(need(files, TOKENIZER_CONFIG, where), dict, "a JSON object")
        if config.get("type") == "wordpiece":
            from .wordpiece import WordPieceTokenizer

            return WordPieceTokenizer.from_files(files, config, where)
        if config.get("type") == "sentencepiece":
            from .spm_tokenizer import SentencePieceTokenizer

            return SentencePieceTokenizer.from_files(files, config, where)
        encoder = read_json_file(need(files, TOKENIZER_VOCAB, where), dict, "a JSON object of token -> id")
        check_vocab(encoder, where / TOKENIZER_VOCAB)
        merges = read_merges(need(files, TOKENIZER_MERGES, where))
        try:
            return cls(
                encoder,
                merges,
                context_length=config_int(config, "context_length", where, 2, MAX_CONTEXT),
                sot_token=config_token(config, "sot_token", encoder, where),
                eot_token=config_token(config, "eot_token", encoder, where),
                pad_token_id=config_int(config, "pad_token_id", where, 0, len(encoder) - 1, default=0),
            )
        except UnicodeDecodeError:
            raise InputError(f"{where / TOKENIZER_MERGES} is not UTF-8 text; re-export the folder") from None

    @classmethod
    def from_clip_bpe_gz(cls, path, context_length: int) -> Tokenizer:
        """open_clip's shipped vocabulary (bpe_simple_vocab_16e6.txt.gz), built as SimpleTokenizer builds it."""
        import gzip

        lines = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [(a, b) for a, b in (m.split() for m in lines[1 : 49152 - 256 - 2 + 1])]
        byte_chars = list(bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += [CLIP_SOT, CLIP_EOT]
        return cls(
            {t: i for i, t in enumerate(vocab)},
            merges,
            context_length=context_length,
            sot_token=CLIP_SOT,
            eot_token=CLIP_EOT,
        )

    def save(self, directory) -> None:
        """Writes the contract's tokenizer/ folder (read back by from_artifacts and the Android core)."""
        folder = Path(directory) / TOKENIZER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOKENIZER_VOCAB).write_text(json.dumps(self.encoder, ensure_ascii=False), encoding="utf-8")
        merges = [" ".join(pair) for pair in self.merges()]
        (folder / TOKENIZER_MERGES).write_text(
            "#version: clip-bpe merges, rank = line order\n" + "\n".join(merges) + "\n", encoding="utf-8"
        )
        decoder = {v: k for k, v in self.encoder.items()}
        config = {
            "type": self.kind,
            "clean": "lower",
            "context_length": self.context_length,
            "sot_token": decoder[self.sot_token_id],
            "eot_token": decoder[self.eot_token_id],
            "sot_token_id": self.sot_token_id,
            "eot_token_id": self.eot_token_id,
            "pad_token_id": self.pad_token_id,
            "truncation": "keep_eot_last",
        }
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    def merges(self) -> list[tuple[str, str]]:
        """The merge pairs in rank order (what merges.txt lists)."""
        decoder = {v: k for k, v in self.encoder.items()}
        ranked: list[tuple[int, str, str]] = [
            (rank, decoder[token][: self._merge_split[token]], decoder[token][self._merge_split[token] :])
            for token, rank in enumerate(self._merge_rank)
            if rank >= 0
        ]
        ranked += [(rank, a, b) for pair, rank in self._other_merges.items() for a, b in [pair.split(" ")]]
        return [(a, b) for _, a, b in sorted(ranked)]

    def merge_rank(self, first: str, second: str) -> float:
        token = self.encoder.get(first + second)
        if token is not None and self._merge_rank[token] >= 0 and self._merge_split[token] == len(first):
            return self._merge_rank[token]
        return self._other_merges.get(f"{first} {second}", _NOT_A_MERGE) if self._other_merges else _NOT_A_MERGE

    def bpe(self, token: str) -> list[str]:
        cached = self._cache.get(token)
        if cached is not None:
            return cached.split(" ")
        word = list(token[:-1]) + [token[-1] + "</w>"]
        rank = self.merge_rank
        while len(word) > 1:
            # The lowest-ranked adjacent pair merges everywhere, left to right, as in open_clip.
            best = min(zip(word, word[1:]), key=lambda pair: rank(*pair))
            if rank(*best) == _NOT_A_MERGE:
                break
            first, second = best
            merged = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = " ".join(word)
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._pattern.findall(clean_lower(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(mapped))
        return ids

    def __call__(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), self.context_length), self.pad_token_id, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_token_id  # truncation keeps EOT last: EOT pooling needs it
            out[row, : len(ids)] = ids
        return out


def read_merges(path: Path):
    """Merge pairs in rank order, streamed (the query process never holds the whole file as a list)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n == 0 and line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) == 2:
                yield parts[0], parts[1]
