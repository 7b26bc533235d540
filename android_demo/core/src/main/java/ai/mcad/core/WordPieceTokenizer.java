package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * BERT WordPiece, id for id the same as Hugging Face's fast BERT tokenizer and the toolkit's
 * (mcad_export/runtime/wordpiece.py): special tokens typed in the text match first (exact case); then clean
 * text, spaces around CJK ideographs, accent stripping, lower-casing; split on whitespace and punctuation;
 * greedy longest-match-first WordPiece with "##" continuations; [CLS] ... [SEP], right truncation, [PAD] = 0.
 *
 * Character classes (dropped, whitespace, punctuation, non-spacing marks), lower-casing and the decompositions
 * tokenizers lacks come from tokenizer/unicode_classes.json, measured from tokenizers on every code point, never
 * from Java's own Unicode tables (another version). Works on code points, so supplementary characters count once.
 */
public final class WordPieceTokenizer implements TextTokenizer {
    private static final int[][] CJK = {{0x4E00, 0x9FFF}, {0x3400, 0x4DBF}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B73F},
        {0x2B740, 0x2B81F}, {0x2B920, 0x2CEAF}, {0xF900, 0xFAFF}, {0x2F800, 0x2FA1F}};

    private final Map<String, Integer> vocab;
    private final int context;
    public final int clsTokenId;
    public final int sepTokenId;
    public final int unkTokenId;
    private final boolean lowercase;
    private final boolean stripAccents;
    private final boolean chinese;
    private final int maxChars;
    private final String[] specials;
    private final int[][] dropped;
    private final int[][] whitespace;
    private final int[][] punctuation;
    private final int[][] marks;
    private final Map<Integer, String> lower = new HashMap<Integer, String>();
    private final Set<Integer> notDecomposed = new HashSet<Integer>();

    @SuppressWarnings("unchecked")
    private WordPieceTokenizer(List<String> tokens, Map<String, Object> cfg, Map<String, Object> classes) {
        vocab = new HashMap<String, Integer>(tokens.size() * 2);
        for (int i = 0; i < tokens.size(); i++) vocab.put(tokens.get(i), i);
        context = ((Number) cfg.get("context_length")).intValue();
        lowercase = !Boolean.FALSE.equals(cfg.get("lowercase"));
        Object strip = cfg.get("strip_accents");
        stripAccents = strip == null ? lowercase : (Boolean) strip;
        chinese = !Boolean.FALSE.equals(cfg.get("tokenize_chinese_chars"));
        Object max = cfg.get("max_input_chars_per_word");
        maxChars = max == null ? 100 : ((Number) max).intValue();
        clsTokenId = vocab.get(name(cfg, "cls_token", "[CLS]"));
        sepTokenId = vocab.get(name(cfg, "sep_token", "[SEP]"));
        unkTokenId = vocab.get(name(cfg, "unk_token", "[UNK]"));
        List<String> sp = new ArrayList<String>();
        for (String key : new String[] {"cls_token", "sep_token", "pad_token", "unk_token", "mask_token"}) {
            Object v = cfg.get(key);
            if (v instanceof String && vocab.containsKey(v) && !sp.contains(v)) sp.add((String) v);
        }
        java.util.Collections.sort(sp, new java.util.Comparator<String>() {   // longest first at each position
            @Override
            public int compare(String a, String b) {
                return b.length() - a.length();
            }
        });
        specials = sp.toArray(new String[0]);
        dropped = ranges(classes.get("dropped"));
        whitespace = ranges(classes.get("whitespace"));
        punctuation = ranges(classes.get("punctuation"));
        marks = ranges(classes.get("nonspacing_marks"));
        for (Map.Entry<String, Object> e : ((Map<String, Object>) classes.get("lowercase")).entrySet()) {
            lower.put(Integer.parseInt(e.getKey()), (String) e.getValue());
        }
        for (Object cp : (List<Object>) classes.get("not_decomposed")) notDecomposed.add(((Number) cp).intValue());
    }

    private static String name(Map<String, Object> cfg, String key, String fallback) {
        Object v = cfg.get(key);
        return v instanceof String ? (String) v : fallback;
    }

    public static WordPieceTokenizer fromDirectory(File dir) throws IOException {
        List<String> tokens = new ArrayList<String>();
        String text = Files2.readString(Files2.open(new File(dir, "vocab.txt")));
        int start = 0;
        for (int i = 0; i < text.length(); i++) {
            if (text.charAt(i) == '\n') {
                String line = text.substring(start, i);
                tokens.add(line.endsWith("\r") ? line.substring(0, line.length() - 1) : line);
                start = i + 1;
            }
        }
        if (start < text.length()) tokens.add(text.substring(start));
        Map<String, Object> cfg = Json.object(Files2.readString(Files2.open(new File(dir, "tokenizer_config.json"))));
        Map<String, Object> classes = Json.object(Files2.readString(Files2.open(new File(dir, "unicode_classes.json"))));
        return new WordPieceTokenizer(tokens, cfg, classes);
    }

    @SuppressWarnings("unchecked")
    private static int[][] ranges(Object list) {
        List<Object> l = (List<Object>) list;
        int[][] out = new int[2][l.size()];
        for (int i = 0; i < l.size(); i++) {
            List<Object> r = (List<Object>) l.get(i);
            out[0][i] = ((Number) r.get(0)).intValue();
            out[1][i] = ((Number) r.get(1)).intValue();
        }
        return out;
    }

    private static boolean in(int[][] ranges, int cp) {
        int i = Arrays.binarySearch(ranges[0], cp);
        if (i < 0) i = -i - 2;    // the last range starting before cp
        return i >= 0 && cp <= ranges[1][i];
    }

    private static boolean isCjk(int cp) {
        for (int[] r : CJK) if (cp >= r[0] && cp <= r[1]) return true;
        return false;
    }

    @Override
    public int contextLength() {
        return context;
    }

    /** BertNormalizer: clean text, CJK spacing, accent stripping, lower-casing (as the config says). */
    public String normalize(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 8);
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (in(dropped, cp)) continue;
            if (in(whitespace, cp)) sb.append(' ');
            else if (chinese && isCjk(cp)) sb.append(' ').appendCodePoint(cp).append(' ');
            else sb.appendCodePoint(cp);
        }
        String out = sb.toString();
        if (stripAccents) {
            String nfd = nfd(out);
            sb.setLength(0);
            for (int i = 0; i < nfd.length(); ) {
                int cp = nfd.codePointAt(i);
                i += Character.charCount(cp);
                if (!in(marks, cp)) sb.appendCodePoint(cp);
            }
            out = sb.toString();
        }
        if (lowercase) {
            sb.setLength(0);
            for (int i = 0; i < out.length(); ) {
                int cp = out.codePointAt(i);
                i += Character.charCount(cp);
                String low = lower.get(cp);
                if (low != null) sb.append(low);
                else sb.appendCodePoint(cp);
            }
            out = sb.toString();
        }
        return out;
    }

    private String nfd(String text) {
        boolean plain = true;
        for (int i = 0; i < text.length() && plain; ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            plain = !notDecomposed.contains(cp);
        }
        if (plain) return Normalizer.normalize(text, Normalizer.Form.NFD);
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            String one = new String(Character.toChars(cp));
            i += Character.charCount(cp);
            sb.append(notDecomposed.contains(cp) ? one : Normalizer.normalize(one, Normalizer.Form.NFD));
        }
        return sb.toString();
    }

    /** BertPreTokenizer: whitespace separates (and is dropped), each punctuation character is a word. */
    public List<String> words(String text) {
        List<String> out = new ArrayList<String>();
        StringBuilder word = new StringBuilder();
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            boolean space = in(whitespace, cp) || cp == ' ';
            boolean punct = in(punctuation, cp);
            if (space || punct) {
                if (word.length() > 0) {
                    out.add(word.toString());
                    word.setLength(0);
                }
                if (punct) out.add(new String(Character.toChars(cp)));
            } else {
                word.appendCodePoint(cp);
            }
        }
        if (word.length() > 0) out.add(word.toString());
        return out;
    }

    /** The code points of `s` (String.codePoints() is API 24; the offline APK build compiles against API 23). */
    static int[] codePoints(String s) {
        int[] out = new int[s.codePointCount(0, s.length())];
        for (int i = 0, j = 0; i < s.length(); j++) {
            out[j] = s.codePointAt(i);
            i += Character.charCount(out[j]);
        }
        return out;
    }

    /** Greedy longest-match-first over code points; a word it cannot cover (or too long) is one [UNK]. */
    public void wordpiece(String word, List<Integer> ids) {
        int[] cps = codePoints(word);
        if (cps.length > maxChars) {
            ids.add(unkTokenId);
            return;
        }
        List<Integer> pieces = new ArrayList<Integer>();
        int start = 0;
        while (start < cps.length) {
            Integer found = null;
            int end = cps.length;
            for (; end > start; end--) {
                String piece = new String(cps, start, end - start);
                found = vocab.get(start == 0 ? piece : "##" + piece);
                if (found != null) break;
            }
            if (found == null) {
                ids.add(unkTokenId);
                return;
            }
            pieces.add(found);
            start = end;
        }
        ids.addAll(pieces);
    }

    /** Token ids of the text, without [CLS]/[SEP]. */
    public List<Integer> encode(String text) {
        List<Integer> ids = new ArrayList<Integer>();
        int segment = 0;
        for (int i = 0; i < text.length(); ) {
            String hit = null;
            for (String s : specials) {
                if (text.startsWith(s, i)) {
                    hit = s;
                    break;
                }
            }
            if (hit == null) {
                i++;
                continue;
            }
            encodeSegment(text.substring(segment, i), ids);
            ids.add(vocab.get(hit));
            i += hit.length();
            segment = i;
        }
        encodeSegment(text.substring(segment), ids);
        return ids;
    }

    private void encodeSegment(String segment, List<Integer> ids) {
        if (segment.isEmpty()) return;
        for (String w : words(normalize(segment))) wordpiece(w, ids);
    }

    @Override
    public int[] tokenize(String text) {
        List<Integer> tokens = encode(text);
        int n = Math.min(tokens.size(), context - 2);
        int[] out = new int[context];
        out[0] = clsTokenId;
        for (int i = 0; i < n; i++) out[i + 1] = tokens.get(i);
        out[n + 1] = sepTokenId;
        return out;
    }
}
