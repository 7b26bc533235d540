package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * CLIP byte-level BPE, token for token the same as open_clip's SimpleTokenizer (and the toolkit's
 * torch-free tokenizer): clean and lowercase, split with CLIP's regex, map UTF-8 bytes to
 * printable characters, merge the lowest-ranked pair until none applies, add SOT/EOT, pad, and on
 * truncation keep EOT last (the text encoder pools at EOT).
 *
 * Reads the bundle's tokenizer/ folder: vocab.json, merges.txt, tokenizer_config.json.
 */
public final class ClipTokenizer implements TextTokenizer {
    private final Map<String, Integer> encoder;
    private final Map<String, Integer> ranks = new HashMap<String, Integer>();
    /** Typed special tokens, never merged (kept apart so the bounded cache can never evict them). */
    private final Map<String, String[]> specials = new HashMap<String, String[]>();
    /**
     * BPE results of recent words: least recently used evicted past CACHE_WORDS (a long-running app must not grow
     * without bound on what users type), synchronized so any thread may tokenize.
     */
    static final int CACHE_WORDS = 10000;
    private final Map<String, String[]> cache = Collections.synchronizedMap(
        new LinkedHashMap<String, String[]>(256, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, String[]> eldest) {
                return size() > CACHE_WORDS;
            }
        });
    private final String[] byteEncoder = new String[256];
    private final Pattern pattern;
    public final int contextLength;
    public final int sotTokenId;
    public final int eotTokenId;
    public final int padTokenId;

    public ClipTokenizer(Map<String, Integer> encoder, List<String[]> merges, int contextLength, String sotToken,
                         String eotToken, int padTokenId) {
        this.encoder = encoder;
        for (int i = 0; i < merges.size(); i++) ranks.put(merges.get(i)[0] + " " + merges.get(i)[1], i);
        this.contextLength = contextLength;
        this.sotTokenId = encoder.get(sotToken);
        this.eotTokenId = encoder.get(eotToken);
        this.padTokenId = padTokenId;
        specials.put(sotToken, new String[] {sotToken});
        specials.put(eotToken, new String[] {eotToken});
        buildByteEncoder();
        pattern = Pattern.compile(Pattern.quote(sotToken) + "|" + Pattern.quote(eotToken)
                + "|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
            Pattern.CASE_INSENSITIVE | Pattern.UNICODE_CASE);
    }

    /** Loads the contract's tokenizer/ folder. */
    public static ClipTokenizer fromDirectory(File dir) throws IOException {
        return fromStreams(Files2.open(new File(dir, "vocab.json")), Files2.open(new File(dir, "merges.txt")),
            Files2.open(new File(dir, "tokenizer_config.json")));
    }

    @SuppressWarnings("unchecked")
    public static ClipTokenizer fromStreams(InputStream vocab, InputStream merges, InputStream config)
            throws IOException {
        Map<String, Object> rawVocab = Json.object(Files2.readString(vocab));
        Map<String, Integer> encoder = new HashMap<String, Integer>(rawVocab.size() * 2);
        for (Map.Entry<String, Object> e : rawVocab.entrySet()) encoder.put(e.getKey(), ((Number) e.getValue()).intValue());
        List<String[]> pairs = new ArrayList<String[]>();
        for (String line : Files2.readString(merges).split("\n")) {
            if (line.startsWith("#") && pairs.isEmpty()) continue;    // the version header
            String[] parts = line.trim().split(" ");
            if (parts.length == 2) pairs.add(parts);
        }
        Map<String, Object> cfg = Json.object(Files2.readString(config));
        Object pad = cfg.get("pad_token_id");
        return new ClipTokenizer(encoder, pairs, ((Number) cfg.get("context_length")).intValue(),
            (String) cfg.get("sot_token"), (String) cfg.get("eot_token"), pad == null ? 0 : ((Number) pad).intValue());
    }

    private void buildByteEncoder() {
        // GPT-2/CLIP reversible table: printable bytes map to themselves, the rest to 256 + n.
        boolean[] printable = new boolean[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xa1; b <= 0xac; b++) printable[b] = true;
        for (int b = 0xae; b <= 0xff; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) {
            byteEncoder[b] = String.valueOf((char) (printable[b] ? b : 256 + n));
            if (!printable[b]) n++;
        }
    }

    private String[] bpe(String token) {
        String[] special = specials.get(token);
        if (special != null) return special;
        String[] cached = cache.get(token);
        if (cached != null) return cached;
        List<String> word = new ArrayList<String>();
        for (int i = 0; i < token.length() - 1; i++) word.add(String.valueOf(token.charAt(i)));
        word.add(token.charAt(token.length() - 1) + "</w>");
        while (word.size() > 1) {
            int bestRank = Integer.MAX_VALUE;
            String first = null, second = null;
            for (int i = 0; i < word.size() - 1; i++) {
                Integer rank = ranks.get(word.get(i) + " " + word.get(i + 1));
                if (rank != null && rank < bestRank) {
                    bestRank = rank;
                    first = word.get(i);
                    second = word.get(i + 1);
                }
            }
            if (first == null) break;
            List<String> merged = new ArrayList<String>(word.size());
            for (int i = 0; i < word.size(); ) {
                if (i < word.size() - 1 && word.get(i).equals(first) && word.get(i + 1).equals(second)) {
                    merged.add(first + second);
                    i += 2;
                } else {
                    merged.add(word.get(i));
                    i += 1;
                }
            }
            word = merged;
        }
        String[] out = word.toArray(new String[0]);
        cache.put(token, out);
        return out;
    }

    /** Token ids of the text, without SOT/EOT. */
    public List<Integer> encode(String text) {
        return encodeCleaned(TextCleaner.cleanLower(text));
    }

    /** BPE of text already cleaned (tests use it to separate cleaning from BPE). */
    public List<Integer> encodeCleaned(String cleaned) {
        List<Integer> ids = new ArrayList<Integer>();
        Matcher m = pattern.matcher(cleaned);
        while (m.find()) {
            StringBuilder mapped = new StringBuilder();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) mapped.append(byteEncoder[b & 0xff]);
            for (String piece : bpe(mapped.toString())) {
                Integer id = encoder.get(piece);
                if (id == null) throw new IllegalStateException("token not in vocab.json: " + piece);
                ids.add(id);
            }
        }
        return ids;
    }

    /** int ids [contextLength]: SOT, tokens, EOT, padding; EOT stays last when the text is too long. */
    @Override
    public int[] tokenize(String text) {
        List<Integer> tokens = encode(text);
        int[] out = new int[contextLength];
        java.util.Arrays.fill(out, padTokenId);
        int n = Math.min(tokens.size() + 2, contextLength);
        out[0] = sotTokenId;
        for (int i = 1; i < n - 1; i++) out[i] = tokens.get(i - 1);
        out[n - 1] = eotTokenId;
        return out;
    }

    @Override
    public int contextLength() {
        return contextLength;
    }

    /** How many leading ids are real tokens (SOT..EOT): what a dynamic-length encoder needs. */
    public static int length(int[] ids, int eotTokenId) {
        for (int i = 0; i < ids.length; i++) if (ids[i] == eotTokenId) return i + 1;
        return ids.length;
    }
}
