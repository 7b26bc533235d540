"""A SentencePiece `.model` file read without the sentencepiece library or protobuf, and its encoder.

`SentencePieceModel.encode(text)` returns the ids `sentencepiece.SentencePieceProcessor.encode(text)` returns, for
unigram and BPE models (byte fallback, user-defined, control and unused pieces, the model's precompiled
normalizer and whitespace rules): tests/test_sentencepiece.py checks it against the library on models trained there.
The algorithms follow the library's own (src/normalizer.cc, unigram_model.cc EncodeOptimized, bpe_model.cc), down
to float32 score sums, so ties break the same way. The Android core ports this file (SentencePiece.java).

The piece table is kept compact for 256k-piece vocabularies (SigLIP 2's Gemma tokenizer): pieces as one UTF-8 blob
with offsets, looked up through a sorted array of their 64-bit hashes, about 13 bytes a piece instead of a ~150-byte
Python dict entry.
"""

from __future__ import annotations

import struct
from array import array
from heapq import heappop, heappush

import numpy as np

from ..errors import InputError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE = 1, 2
SPACE = "\u2581"  # what the normalizer writes for a space
UNK_PENALTY = np.float32(10.0)  # unigram_model.cc kUnkPenalty
FLT_MIN = struct.unpack("<f", struct.pack("<I", 0x00800000))[0]  # the library's initial max_score_
_FLOAT = struct.Struct("<f")


def f32(x: float) -> float:
    """x rounded to float32, as the library stores a score sum."""
    return _FLOAT.unpack(_FLOAT.pack(x))[0]


# ----------------------------------------------------------------------------------------------------------- protobuf


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value is int, bytes or a 4/8-byte slice."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def piece_count(data: bytes, where: str = "the SentencePiece model") -> int:
    """How many pieces a .model file holds, without building anything (a loader's size check)."""
    try:
        return sum(1 for number, wire, _ in _fields(data) if number == 1 and wire == 2)
    except ValueError as e:
        raise InputError(
            f"{where} is not a SentencePiece model ({e}); use the file that came with the student"
        ) from None


class ModelSpec:
    """What encoding needs from a ModelProto (sentencepiece_model.proto field numbers; the proto's defaults). The
    special ids (unk/bos/eos/pad) are not read: the unknown piece is found by its type, the others by name from the
    tokenizer's config."""

    def __init__(self, data: bytes):
        # The pieces as one UTF-8 blob + offsets, scores and types as typed arrays: no Python object per piece,
        # which for a 256k vocabulary were ~40 MB resident and ~90 MB at the load's peak (benchmarks/README.md).
        blob, ends = bytearray(), array("q")
        scores, types = array("f"), array("B")
        self.model_type, self.byte_fallback, self.treat_whitespace_as_suffix = UNIGRAM, False, False
        self.charsmap = b""
        self.add_dummy_prefix = self.remove_extra_whitespaces = self.escape_whitespaces = True
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:
                piece, score, kind = b"", 0.0, NORMAL
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        piece = v
                        piece.decode("utf-8")  # UnicodeDecodeError: not a SentencePiece model
                    elif n == 2 and w == 5:
                        score = _FLOAT.unpack(v)[0]
                    elif n == 3 and w == 0:
                        kind = v
                blob += piece
                ends.append(len(blob))
                scores.append(score)
                types.append(kind)
            elif number == 2 and wire == 2:
                for n, w, v in _fields(value):
                    if w != 0:
                        continue
                    if n == 3:
                        self.model_type = v
                    elif n == 24:
                        self.treat_whitespace_as_suffix = bool(v)
                    elif n == 35:
                        self.byte_fallback = bool(v)
            elif number == 3 and wire == 2:
                for n, w, v in _fields(value):
                    if n == 2 and w == 2:
                        self.charsmap = bytes(v)
                    elif n in (3, 4, 5) and w == 0:
                        name = {3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}[n]
                        setattr(self, name, bool(v))
        self.scores = np.frombuffer(scores, dtype=np.float32).copy()
        self.types = np.frombuffer(types, dtype=np.uint8).copy()
        self.blob = bytes(blob)
        self.offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        self.offsets[1:] = np.frombuffer(ends, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def piece(self, i: int) -> str:
        return self.blob[self.offsets[i] : self.offsets[i + 1]].decode("utf-8")


# --------------------------------------------------------------------------------------------------------- normalizer


class _DoubleArray:
    """Darts-clone's double-array trie, as the library stores the precompiled normalization rules."""

    def __init__(self, units: np.ndarray):
        self.units = units.tolist()

    def prefixes(self, key: bytes, start: int):
        """(value, length) of every key in the trie that is a prefix of key[start:], shortest first."""
        units = self.units
        unit = units[0]
        node = (unit >> 10) << ((unit & (1 << 9)) >> 6)
        for i in range(start, len(key)):
            node ^= key[i]
            if node >= len(units):
                return
            unit = units[node]
            if unit & ((1 << 31) | 0xFF) != key[i]:
                return
            node ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
            if (unit >> 8) & 1:
                yield units[node] & ((1 << 31) - 1), i + 1 - start


def _char_len(first_byte: int) -> int:
    # string_util::OneCharLen
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[first_byte >> 4]


def _valid_char_len(data: bytes, pos: int) -> int:
    """The length of the valid UTF-8 character at pos, or 0 (string_util::IsValidDecodeUTF8)."""
    n = _char_len(data[pos])
    if pos + n > len(data):
        return 0
    try:
        char = data[pos : pos + n].decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return n if len(char) == 1 else 0


class _UserSymbols:
    """The library's PrefixMatcher: the longest user-defined piece at a position, matched before normalization."""

    def __init__(self, symbols: list[str]):
        self.by_first: dict[int, list[bytes]] = {}
        for s in symbols:
            b = s.encode("utf-8")
            self.by_first.setdefault(b[0], []).append(b)
        for group in self.by_first.values():
            group.sort(key=len, reverse=True)

    def match(self, data: bytes, pos: int) -> int:
        for candidate in self.by_first.get(data[pos], ()):
            if data.startswith(candidate, pos):
                return len(candidate)
        return 0


class Normalizer:
    def __init__(self, spec: ModelSpec, user_symbols: _UserSymbols):
        self.spec, self.user_symbols = spec, user_symbols
        self.trie, self.replacements = None, b""
        blob = spec.charsmap
        if blob:
            if len(blob) < 4:
                raise ValueError("precompiled_charsmap shorter than its header")
            (trie_size,) = struct.unpack_from("<I", blob)
            if trie_size % 4 or 4 + trie_size > len(blob):
                raise ValueError("precompiled_charsmap's trie does not fit the blob")
            self.trie = _DoubleArray(np.frombuffer(blob, dtype="<u4", count=trie_size // 4, offset=4))
            self.replacements = blob[4 + trie_size :]
            for rule in self.replacements.split(b"\0"):
                rule.decode("utf-8")  # a rule that is not UTF-8 fails here, at load, not in a query

    def _prefix(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """NormalizePrefix: (normalized bytes, bytes consumed) at pos."""
        n = self.user_symbols.match(data, pos)
        if n:
            return data[pos : pos + n], n
        longest, value = 0, 0
        if self.trie is not None:
            for v, length in self.trie.prefixes(data, pos):
                if length > longest:
                    longest, value = length, v
        if longest:
            end = self.replacements.find(b"\0", value)
            return self.replacements[value : end if end >= 0 else len(self.replacements)], longest
        n = _valid_char_len(data, pos)
        return (data[pos : pos + n], n) if n else (b"\xef\xbf\xbd", 1)

    def normalize(self, text: str) -> str:
        spec = self.spec
        data = text.encode("utf-8")
        pos = 0
        if spec.remove_extra_whitespaces:
            while pos < len(data):
                piece, n = self._prefix(data, pos)
                if piece != b" ":
                    break
                pos += n
        if pos >= len(data):
            return ""
        space = SPACE.encode("utf-8") if spec.escape_whitespaces else b" "
        out = bytearray()
        if not spec.treat_whitespace_as_suffix and spec.add_dummy_prefix:
            out += space
        prev_space = spec.remove_extra_whitespaces
        while pos < len(data):
            piece, n = self._prefix(data, pos)
            if prev_space:
                piece = piece.lstrip(b" ")
            if piece:
                out += piece.replace(b" ", space) if spec.escape_whitespaces else piece
                prev_space = piece.endswith(b" ")
            pos += n
            if not spec.remove_extra_whitespaces:
                prev_space = False
        if spec.remove_extra_whitespaces:
            while out.endswith(space):
                del out[-len(space) :]
        if spec.treat_whitespace_as_suffix and spec.add_dummy_prefix:
            out += space
        return out.decode("utf-8")


# ------------------------------------------------------------------------------------------------------- piece table


class PieceTable:
    """piece -> id for the pieces the encoders match (normal, user-defined, unused), in ~13 bytes a piece."""

    def __init__(self, spec: ModelSpec, ids: np.ndarray):
        starts, ends = array("q"), array("q")  # not lists: 256k Python ints each
        starts.frombytes(spec.offsets[ids].astype(np.int64).tobytes())
        ends.frombytes(spec.offsets[ids + 1].astype(np.int64).tobytes())
        blob = bytearray()
        for a, b in zip(starts, ends):
            blob += spec.blob[a:b]
        self.blob = bytes(blob)
        self.offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(np.asarray(ends, dtype=np.int64) - np.asarray(starts, dtype=np.int64), out=self.offsets[1:])
        # one str at a time, for its hash (lookups hash the query's substrings as str) and its length in chars
        lengths = np.zeros(len(ids), dtype=np.int64)
        hashes = np.zeros(len(ids), dtype=np.int64)
        for row, (a, b) in enumerate(zip(starts, ends)):
            piece = spec.blob[a:b].decode("utf-8")
            hashes[row], lengths[row] = hash(piece), len(piece)
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.rows = order.astype(np.int32)  # row in blob order
        self.ids = np.asarray(ids, dtype=np.int32)
        self.max_chars = int(lengths.max()) if len(ids) else 0

    def has_repeats(self) -> bool:
        """Whether two rows hold the same piece (equal hashes, then equal bytes)."""
        same = np.flatnonzero(self.hashes[1:] == self.hashes[:-1])
        return any(self._bytes(int(self.rows[i])) == self._bytes(int(self.rows[i + 1])) for i in same.tolist())

    def _bytes(self, row: int) -> bytes:
        return self.blob[self.offsets[row] : self.offsets[row + 1]]

    def get(self, piece: str) -> int:
        """The piece's id, or -1."""
        h = hash(piece)
        return self._at(piece, h, int(np.searchsorted(self.hashes, h)))

    def _at(self, piece: str, h: int, i: int) -> int:
        """The id of the piece whose hash h sits first at sorted position i (pieces sharing a hash follow it)."""
        encoded = None
        while i < len(self.hashes) and self.hashes[i] == h:
            row = int(self.rows[i])
            encoded = piece.encode("utf-8") if encoded is None else encoded
            if self._bytes(row) == encoded:
                return int(self.ids[row])
            i += 1
        return -1

    def get_any(self, pieces) -> bool:
        """Whether any of `pieces` is in the table."""
        return any(self.get(piece) >= 0 for piece in pieces)

    def matches(self, text: str, longest: int) -> list[list[tuple[int, int]]]:
        """For each start in text, the (end, id) of every piece text[start:end]: all candidates hashed and looked
        up in one vectorised search (a per-substring search costs ~2 us, too much for a query's ~2,000)."""
        size = len(text)
        spans = [(s, e) for s in range(size) for e in range(s + 1, min(size, s + longest) + 1)]
        found: list[list[tuple[int, int]]] = [[] for _ in range(size)]
        if not spans or not len(self.hashes):
            return found
        hashes = np.fromiter((hash(text[s:e]) for s, e in spans), dtype=np.int64, count=len(spans))
        where = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        for k in np.flatnonzero(self.hashes[where] == hashes).tolist():
            s, e = spans[k]
            token = self._at(text[s:e], int(hashes[k]), int(where[k]))  # verified where the search found it
            if token >= 0:
                found[s].append((e, token))
        return found

    def resident_bytes(self) -> int:
        return len(self.blob) + sum(a.nbytes for a in (self.offsets, self.hashes, self.rows, self.ids))


# ---------------------------------------------------------------------------------------------------------- encoders


class SentencePieceModel:
    """sentencepiece.SentencePieceProcessor(model_file=...).encode(text), without the library."""

    def __init__(self, data: bytes, where: str = "the SentencePiece model"):
        try:
            spec = ModelSpec(data)
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            raise InputError(f"{where} is not a SentencePiece model ({e}); re-export the folder") from None
        self.spec = spec
        types = spec.types
        if not len(spec):
            raise InputError(f"{where} is not a SentencePiece model (no pieces); re-export the folder")
        if spec.model_type not in (UNIGRAM, BPE):
            raise InputError(f"{where}: model type {spec.model_type} is not unigram (1) or BPE (2)")
        repeated = f"{where} has an empty or repeated piece; re-export the folder"
        if (np.diff(spec.offsets) == 0).any():
            raise InputError(repeated)
        unknown = np.flatnonzero(types == UNKNOWN)
        if len(unknown) != 1:
            raise InputError(f"{where} must define exactly one unknown piece (it has {len(unknown)})")
        self.unk_id = int(unknown[0])
        matched = np.flatnonzero(np.isin(types, (NORMAL, USER_DEFINED, UNUSED)))
        self.table = PieceTable(spec, matched)
        # control, unknown and byte pieces: looked up by name only (PieceToId's reserved map)
        reserved = np.flatnonzero(~np.isin(types, (NORMAL, USER_DEFINED, UNUSED))).tolist()
        self.reserved = {spec.piece(i): i for i in reserved}
        if self.table.has_repeats() or len(self.reserved) != len(reserved) or self.table.get_any(self.reserved):
            raise InputError(repeated)
        self.byte_ids: list[int] | None = None
        if spec.byte_fallback:
            self.byte_ids = [self.reserved.get(f"<0x{b:02X}>", -1) for b in range(256)]
            if -1 in self.byte_ids:
                raise InputError(f"{where} has byte_fallback but not all 256 <0xXX> byte pieces")
        user = [spec.piece(i) for i in np.flatnonzero(types == USER_DEFINED).tolist()]
        self.user_symbols = _UserSymbols(user)
        self.control_pieces = frozenset(spec.piece(i) for i in np.flatnonzero(types == CONTROL).tolist())
        self.normalizer = Normalizer(spec, self.user_symbols)
        normal = spec.scores[types == NORMAL]
        self.min_score = float(normal.min()) if len(normal) else float(np.finfo(np.float32).max)
        self.max_score = max(float(normal.max()), FLT_MIN) if len(normal) else FLT_MIN

    def __len__(self) -> int:
        return len(self.spec)

    def find(self, piece: str) -> int | None:
        """The piece's id by name, any type (the library's PieceToId), or None."""
        reserved = self.reserved.get(piece)
        if reserved is not None:
            return reserved
        found = self.table.get(piece)
        return found if found >= 0 else None

    def piece_to_id(self, piece: str) -> int:
        found = self.find(piece)
        return self.unk_id if found is None else found

    def encode(self, text: str) -> list[int]:
        normalized = self.normalizer.normalize(text)
        if not normalized:
            return []
        pieces = self._unigram(normalized) if self.spec.model_type == UNIGRAM else self._bpe(normalized)
        ids: list[int] = []
        prev_unk = False
        for piece, token in pieces:
            unk = token == self.unk_id
            if unk and self.byte_ids is not None:
                ids.extend(self.byte_ids[b] for b in piece.encode("utf-8"))
            elif not (unk and prev_unk):  # a run of unknown pieces is one unknown id
                ids.append(token)
            prev_unk = unk
        return ids

    def _unigram(self, text: str) -> list[tuple[str, int]]:
        """EncodeOptimized: the best path ending at each character, scores summed as the library sums them."""
        size = len(text)
        types, scores = self.spec.types, self.spec.scores
        unk_score = f32(float(np.float32(self.min_score) - UNK_PENALTY))
        best_score = [0.0] * (size + 1)
        best_start = [-1] * (size + 1)
        best_id = [-1] * (size + 1)
        candidates = self.table.matches(text, self.table.max_chars)
        for start in range(size):
            here = best_score[start]
            single = False
            for end, token in candidates[start]:
                if types[token] == UNUSED:
                    continue
                if types[token] == USER_DEFINED:
                    # length in bytes times max score, in float, minus a double 0.1: the library's bonus
                    score = f32(len(text[start:end].encode("utf-8")) * self.max_score) - 0.1
                else:
                    score = float(scores[token])
                candidate = score + here  # compared in double, stored in float
                if best_start[end] == -1 or candidate > best_score[end]:
                    best_score[end], best_start[end], best_id[end] = f32(candidate), start, token
                if end == start + 1:
                    single = True
            if not single:
                candidate = f32(unk_score + here)
                if best_start[start + 1] == -1 or candidate > best_score[start + 1]:
                    best_score[start + 1], best_start[start + 1], best_id[start + 1] = candidate, start, self.unk_id
        out = []
        end = size
        while end > 0:
            start = best_start[end]
            out.append((text[start:end], best_id[end]))
            end = start
        out.reverse()
        return out

    def _bpe(self, text: str) -> list[tuple[str, int]]:
        """bpe_model.cc: merge the best-scoring adjacent pair (leftmost on a tie) until none is a piece."""
        data = text.encode("utf-8")
        symbols: list[str] = []
        nbytes: list[int] = []  # the library compares sizes in bytes (a stale pair is one whose sizes moved)
        frozen: list[bool] = []
        pos = 0
        while pos < len(data):
            n = self.user_symbols.match(data, pos)
            frozen.append(n > 0)
            n = n or min(_char_len(data[pos]), len(data) - pos)
            symbols.append(data[pos : pos + n].decode("utf-8"))
            nbytes.append(n)
            pos += n
        count = len(symbols)
        prev = list(range(-1, count - 1))
        nxt = list(range(1, count + 1))
        nxt[-1] = -1
        scores, types = self.spec.scores, self.spec.types
        agenda: list[tuple[float, int, int, int]] = []
        split: dict[str, tuple[str, str]] = {}

        def add_pair(left: int, right: int) -> None:
            if left == -1 or right == -1 or frozen[left] or frozen[right]:
                return
            piece = symbols[left] + symbols[right]
            token = self.table.get(piece)
            if token < 0:
                return
            heappush(agenda, (-float(scores[token]), left, right, nbytes[left] + nbytes[right]))
            if types[token] == UNUSED:
                split[piece] = (symbols[left], symbols[right])

        for i in range(1, count):
            add_pair(i - 1, i)
        while agenda:
            _, left, right, length = heappop(agenda)
            if not symbols[left] or not symbols[right] or nbytes[left] + nbytes[right] != length:
                continue
            symbols[left] += symbols[right]
            nbytes[left] += nbytes[right]
            symbols[right], nbytes[right] = "", 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add_pair(prev[left], left)
            add_pair(left, nxt[left])

        out: list[tuple[str, int]] = []
        index = 0
        while index != -1:
            # resegment, iteratively: an unused piece splits back into the pair that formed it
            stack = [symbols[index]]
            while stack:
                piece = stack.pop()
                token = self.piece_to_id(piece)
                if types[token] == UNUSED and piece in split:
                    stack.extend(reversed(split[piece]))
                else:
                    out.append((piece, token))
            index = nxt[index]
        return out
