package ai.mcad.core;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * A SentencePiece .model file read without protobuf and encoded as the sentencepiece library encodes: the port of
 * the toolkit's mcad_export/runtime/spm_model.py (unigram: the library's optimized Viterbi with float32 score sums;
 * BPE: best-scoring adjacent pair first, leftmost on a tie; byte fallback; the precompiled normalizer's double-array
 * trie; dummy prefix and whitespace rules; user-defined, control and unused pieces). Golden vectors from the
 * toolkit check it id for id (SentencePieceGoldenTest).
 */
final class SentencePiece {
    static final int NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5;
    static final String SPACE = "\u2581";
    private static final float UNK_PENALTY = 10.0f;

    final String[] pieces;
    final float[] scores;
    final int[] types;
    int modelType = 1;
    boolean byteFallback, whitespaceAsSuffix;
    boolean addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;
    private int[] trie;
    private byte[] replacements;
    final Map<String, Integer> table = new HashMap<String, Integer>();   // normal, user-defined, unused
    final Map<String, Integer> reserved = new HashMap<String, Integer>();  // control, unknown, byte
    final int unkId;
    private int[] byteIds;
    private final List<byte[]> userSymbols = new ArrayList<byte[]>();
    private final float minScore, maxScore;
    private int maxPieceChars;

    SentencePiece(byte[] data) {
        List<String> p = new ArrayList<String>();
        List<Float> s = new ArrayList<Float>();
        List<Integer> t = new ArrayList<Integer>();
        Proto top = new Proto(data, 0, data.length);
        while (top.next()) {
            if (top.number == 1 && top.wire == 2) {
                Proto piece = top.message();
                String text = "";
                float score = 0f;
                int type = NORMAL;
                while (piece.next()) {
                    if (piece.number == 1 && piece.wire == 2) text = piece.string();
                    else if (piece.number == 2 && piece.wire == 5) score = Float.intBitsToFloat(piece.fixed32);
                    else if (piece.number == 3 && piece.wire == 0) type = (int) piece.varint;
                }
                p.add(text);
                s.add(score);
                t.add(type);
            } else if (top.number == 2 && top.wire == 2) {
                Proto trainer = top.message();
                while (trainer.next()) {
                    if (trainer.wire != 0) continue;
                    if (trainer.number == 3) modelType = (int) trainer.varint;
                    else if (trainer.number == 24) whitespaceAsSuffix = trainer.varint != 0;
                    else if (trainer.number == 35) byteFallback = trainer.varint != 0;
                }
            } else if (top.number == 3 && top.wire == 2) {
                Proto normalizer = top.message();
                while (normalizer.next()) {
                    if (normalizer.number == 2 && normalizer.wire == 2) readCharsmap(normalizer.bytes());
                    else if (normalizer.wire == 0 && normalizer.number == 3) addDummyPrefix = normalizer.varint != 0;
                    else if (normalizer.wire == 0 && normalizer.number == 4) removeExtraWhitespaces = normalizer.varint != 0;
                    else if (normalizer.wire == 0 && normalizer.number == 5) escapeWhitespaces = normalizer.varint != 0;
                }
            }
        }
        pieces = p.toArray(new String[0]);
        scores = new float[pieces.length];
        types = new int[pieces.length];
        int unk = -1;
        float min = Float.MAX_VALUE, max = Float.MIN_NORMAL;  // the library's FLT_MAX / FLT_MIN
        for (int i = 0; i < pieces.length; i++) {
            scores[i] = s.get(i);
            types[i] = t.get(i);
            boolean matched = types[i] == NORMAL || types[i] == USER_DEFINED || types[i] == UNUSED;
            (matched ? table : reserved).put(pieces[i], i);
            if (matched) maxPieceChars = Math.max(maxPieceChars, pieces[i].codePointCount(0, pieces[i].length()));
            if (types[i] == UNKNOWN) unk = i;
            if (types[i] == USER_DEFINED) userSymbols.add(pieces[i].getBytes(StandardCharsets.UTF_8));
            if (types[i] == NORMAL) {
                min = Math.min(min, scores[i]);
                max = Math.max(max, scores[i]);
            }
        }
        if (unk < 0) throw new IllegalArgumentException("the SentencePiece model has no unknown piece");
        unkId = unk;
        minScore = min;
        maxScore = max;
        // longest first, so the first match at a position is the longest (the library's PrefixMatcher)
        java.util.Collections.sort(userSymbols, new java.util.Comparator<byte[]>() {
            @Override
            public int compare(byte[] a, byte[] b) {
                return b.length - a.length;
            }
        });
        if (byteFallback) {
            byteIds = new int[256];
            for (int b = 0; b < 256; b++) {
                Integer id = reserved.get(String.format("<0x%02X>", b));
                if (id == null) throw new IllegalArgumentException("byte_fallback without every <0xXX> piece");
                byteIds[b] = id;
            }
        }
    }

    private void readCharsmap(byte[] blob) {
        if (blob.length < 4) return;
        int size = (blob[0] & 0xff) | (blob[1] & 0xff) << 8 | (blob[2] & 0xff) << 16 | (blob[3] & 0xff) << 24;
        trie = new int[size / 4];
        for (int i = 0; i < trie.length; i++) {
            int o = 4 + 4 * i;
            trie[i] = (blob[o] & 0xff) | (blob[o + 1] & 0xff) << 8 | (blob[o + 2] & 0xff) << 16 | (blob[o + 3] & 0xff) << 24;
        }
        replacements = Arrays.copyOfRange(blob, 4 + size, blob.length);
    }

    int size() {
        return pieces.length;
    }

    int pieceToId(String piece) {
        Integer id = reserved.get(piece);
        if (id == null) id = table.get(piece);
        return id == null ? unkId : id;
    }

    /** sentencepiece.SentencePieceProcessor.encode(text). */
    List<Integer> encode(String text) {
        List<Integer> ids = new ArrayList<Integer>();
        String normalized = normalize(text);
        if (normalized.isEmpty()) return ids;
        List<Object[]> found = modelType == 1 ? unigram(normalized) : bpe(normalized);
        boolean prevUnk = false;
        for (Object[] f : found) {
            int id = (Integer) f[1];
            boolean unk = id == unkId;
            if (unk && byteIds != null) {
                for (byte b : ((String) f[0]).getBytes(StandardCharsets.UTF_8)) ids.add(byteIds[b & 0xff]);
            } else if (!(unk && prevUnk)) {
                ids.add(id);  // a run of unknown pieces is one unknown id
            }
            prevUnk = unk;
        }
        return ids;
    }

    // ------------------------------------------------------------------------------------------------ normalizer

    private int userMatch(byte[] data, int pos) {
        for (byte[] u : userSymbols) {
            if (pos + u.length > data.length) continue;
            boolean same = true;
            for (int i = 0; i < u.length && same; i++) same = data[pos + i] == u[i];
            if (same) return u.length;
        }
        return 0;
    }

    private static int charLen(byte first) {
        int[] lengths = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
        return lengths[(first & 0xff) >>> 4];
    }

    /** NormalizePrefix: {normalized bytes, consumed} at pos. */
    private Object[] prefix(byte[] data, int pos) {
        int n = userMatch(data, pos);
        if (n > 0) return new Object[] {Arrays.copyOfRange(data, pos, pos + n), n};
        int longest = 0, value = 0;
        if (trie != null) {
            int unit = trie[0];
            int node = (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
            for (int i = pos; i < data.length; i++) {
                node ^= data[i] & 0xff;
                if (node < 0 || node >= trie.length) break;
                unit = trie[node];
                if ((unit & 0x800000ff) != (data[i] & 0xff)) break;
                node ^= (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
                if (((unit >>> 8) & 1) == 1 && node < trie.length) {
                    longest = i + 1 - pos;
                    value = trie[node] & 0x7fffffff;
                }
            }
        }
        if (longest > 0) {
            int end = value;
            while (end < replacements.length && replacements[end] != 0) end++;
            return new Object[] {Arrays.copyOfRange(replacements, value, end), longest};
        }
        int len = charLen(data[pos]);
        if (pos + len <= data.length) {
            String c = new String(data, pos, len, StandardCharsets.UTF_8);
            boolean literalReplacement = len == 3 && data[pos] == (byte) 0xef && data[pos + 1] == (byte) 0xbf
                && data[pos + 2] == (byte) 0xbd;
            if (literalReplacement || (c.codePointCount(0, c.length()) == 1 && c.codePointAt(0) != 0xfffd)) {
                return new Object[] {Arrays.copyOfRange(data, pos, pos + len), len};
            }
        }
        return new Object[] {new byte[] {(byte) 0xef, (byte) 0xbf, (byte) 0xbd}, 1};
    }

    String normalize(String text) {
        byte[] data = text.getBytes(StandardCharsets.UTF_8);
        int pos = 0;
        if (removeExtraWhitespaces) {
            while (pos < data.length) {
                Object[] p = prefix(data, pos);
                byte[] piece = (byte[]) p[0];
                if (!(piece.length == 1 && piece[0] == ' ')) break;
                pos += (Integer) p[1];
            }
        }
        if (pos >= data.length) return "";
        byte[] space = escapeWhitespaces ? SPACE.getBytes(StandardCharsets.UTF_8) : new byte[] {' '};
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream(data.length * 3);
        if (!whitespaceAsSuffix && addDummyPrefix) out.write(space, 0, space.length);
        boolean prevSpace = removeExtraWhitespaces;
        while (pos < data.length) {
            Object[] p = prefix(data, pos);
            byte[] piece = (byte[]) p[0];
            int start = 0;
            if (prevSpace) while (start < piece.length && piece[start] == ' ') start++;
            if (start < piece.length) {
                for (int i = start; i < piece.length; i++) {
                    if (escapeWhitespaces && piece[i] == ' ') out.write(space, 0, space.length);
                    else out.write(piece[i]);
                }
                prevSpace = piece[piece.length - 1] == ' ';
            }
            pos += (Integer) p[1];
            if (!removeExtraWhitespaces) prevSpace = false;
        }
        byte[] result = out.toByteArray();
        int end = result.length;
        if (removeExtraWhitespaces) {
            while (end >= space.length && Arrays.equals(Arrays.copyOfRange(result, end - space.length, end), space)) {
                end -= space.length;
            }
        }
        String s = new String(result, 0, end, StandardCharsets.UTF_8);
        if (whitespaceAsSuffix && addDummyPrefix) s += new String(space, StandardCharsets.UTF_8);
        return s;
    }

    // -------------------------------------------------------------------------------------------------- unigram

    private static int utf8Length(String s) {
        return s.getBytes(StandardCharsets.UTF_8).length;
    }

    private List<Object[]> unigram(String text) {
        int[] at = new int[text.codePointCount(0, text.length()) + 1];  // UTF-16 offset of each code point
        for (int i = 0, k = 0; i < text.length(); i += Character.charCount(text.codePointAt(i))) at[k++] = i;
        int size = at.length - 1;
        at[size] = text.length();
        float unkScore = minScore - UNK_PENALTY;
        float[] best = new float[size + 1];
        int[] start = new int[size + 1];
        int[] id = new int[size + 1];
        Arrays.fill(start, -1);
        for (int s = 0; s < size; s++) {
            float here = best[s];
            boolean single = false;
            for (int e = s + 1; e <= Math.min(size, s + maxPieceChars); e++) {
                String piece = text.substring(at[s], at[e]);
                Integer token = table.get(piece);
                if (token == null || types[token] == UNUSED) continue;
                // float product minus a double 0.1 for user-defined pieces: the library's arithmetic
                double score = types[token] == USER_DEFINED ? (float) (utf8Length(piece) * maxScore) - 0.1 : scores[token];
                double candidate = score + here;
                if (start[e] == -1 || candidate > best[e]) {
                    best[e] = (float) candidate;
                    start[e] = s;
                    id[e] = token;
                }
                if (e == s + 1) single = true;
            }
            if (!single) {
                float candidate = unkScore + here;
                if (start[s + 1] == -1 || candidate > best[s + 1]) {
                    best[s + 1] = candidate;
                    start[s + 1] = s;
                    id[s + 1] = unkId;
                }
            }
        }
        List<Object[]> out = new ArrayList<Object[]>();
        for (int e = size; e > 0; e = start[e]) out.add(0, new Object[] {text.substring(at[start[e]], at[e]), id[e]});
        return out;
    }

    // ------------------------------------------------------------------------------------------------------ bpe

    private List<Object[]> bpe(String text) {
        byte[] data = text.getBytes(StandardCharsets.UTF_8);
        final List<String> symbols = new ArrayList<String>();
        final List<Integer> bytes = new ArrayList<Integer>();
        final List<Boolean> frozen = new ArrayList<Boolean>();
        for (int pos = 0; pos < data.length; ) {
            int n = userMatch(data, pos);
            frozen.add(n > 0);
            if (n == 0) n = Math.min(charLen(data[pos]), data.length - pos);
            symbols.add(new String(data, pos, n, StandardCharsets.UTF_8));
            bytes.add(n);
            pos += n;
        }
        int count = symbols.size();
        final int[] prev = new int[count], next = new int[count];
        for (int i = 0; i < count; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        // {score, left, right, bytes}: highest score first, then the leftmost (the library's comparator). No lambdas:
        // android.jar below API 26 has no java.lang.invoke, which javac needs for them.
        PriorityQueue<float[]> agenda = new PriorityQueue<float[]>(11, new java.util.Comparator<float[]>() {
            @Override
            public int compare(float[] a, float[] b) {
                return a[0] != b[0] ? Float.compare(b[0], a[0]) : Float.compare(a[1], b[1]);
            }
        });
        Map<String, String[]> split = new HashMap<String, String[]>();
        for (int i = 1; i < count; i++) addPair(i - 1, i, symbols, bytes, frozen, agenda, split);
        while (!agenda.isEmpty()) {
            float[] top = agenda.poll();
            int left = (int) top[1], right = (int) top[2];
            if (symbols.get(left).isEmpty() || symbols.get(right).isEmpty()
                || bytes.get(left) + bytes.get(right) != (int) top[3]) continue;
            symbols.set(left, symbols.get(left) + symbols.get(right));
            bytes.set(left, bytes.get(left) + bytes.get(right));
            symbols.set(right, "");
            bytes.set(right, 0);
            next[left] = next[right];
            if (next[right] >= 0) prev[next[right]] = left;
            if (prev[left] >= 0) addPair(prev[left], left, symbols, bytes, frozen, agenda, split);
            if (next[left] >= 0) addPair(left, next[left], symbols, bytes, frozen, agenda, split);
        }
        List<Object[]> out = new ArrayList<Object[]>();
        for (int index = 0; index != -1; index = next[index]) {
            java.util.ArrayDeque<String> stack = new java.util.ArrayDeque<String>();
            stack.push(symbols.get(index));
            while (!stack.isEmpty()) {
                String piece = stack.pop();
                int token = pieceToId(piece);
                String[] pair = split.get(piece);
                if (types[token] == UNUSED && pair != null) {
                    stack.push(pair[1]);
                    stack.push(pair[0]);
                } else {
                    out.add(new Object[] {piece, token});
                }
            }
        }
        return out;
    }

    private void addPair(int left, int right, List<String> symbols, List<Integer> bytes, List<Boolean> frozen,
                         PriorityQueue<float[]> agenda, Map<String, String[]> split) {
        if (frozen.get(left) || frozen.get(right)) return;
        String piece = symbols.get(left) + symbols.get(right);
        Integer token = table.get(piece);
        if (token == null) return;
        agenda.add(new float[] {scores[token], left, right, bytes.get(left) + bytes.get(right)});
        if (types[token] == UNUSED) split.put(piece, new String[] {symbols.get(left), symbols.get(right)});
    }

    // ------------------------------------------------------------------------------------------------- protobuf

    /** One protobuf message's fields, read in order (sentencepiece_model.proto needs varint, fixed32, bytes). */
    static final class Proto {
        private final byte[] data;
        private int pos;
        private final int end;
        int number, wire, fixed32, start, length;
        long varint;

        Proto(byte[] data, int start, int end) {
            this.data = data;
            this.pos = start;
            this.end = end;
        }

        private long readVarint() {
            long result = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                if (pos >= end) throw new IllegalArgumentException("truncated varint");
                int b = data[pos++] & 0xff;
                result |= (long) (b & 0x7f) << shift;
                if (b < 0x80) return result;
            }
            throw new IllegalArgumentException("varint too long");
        }

        boolean next() {
            if (pos >= end) return false;
            long key = readVarint();
            number = (int) (key >>> 3);
            wire = (int) (key & 7);
            if (wire == 0) {
                varint = readVarint();
            } else if (wire == 2) {
                long n = readVarint();
                if (n < 0 || pos + n > end) throw new IllegalArgumentException("truncated field");
                start = pos;
                length = (int) n;
                pos += length;
            } else if (wire == 5) {
                if (pos + 4 > end) throw new IllegalArgumentException("truncated field");
                fixed32 = (data[pos] & 0xff) | (data[pos + 1] & 0xff) << 8 | (data[pos + 2] & 0xff) << 16 | (data[pos + 3] & 0xff) << 24;
                pos += 4;
            } else if (wire == 1) {
                pos += 8;
            } else {
                throw new IllegalArgumentException("wire type " + wire);
            }
            if (pos > end) throw new IllegalArgumentException("truncated field");
            return true;
        }

        Proto message() {
            return new Proto(data, start, start + length);
        }

        byte[] bytes() {
            return Arrays.copyOfRange(data, start, start + length);
        }

        String string() {
            return new String(data, start, length, StandardCharsets.UTF_8);
        }
    }
}
