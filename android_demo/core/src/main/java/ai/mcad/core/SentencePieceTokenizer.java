package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * SigLIP-family tokenizer: SentencePiece (SentencePiece.java) wrapped as the student's Hugging Face class wraps it,
 * the port of mcad_export/runtime/spm_tokenizer.py. `siglip` (SiglipTokenizer): typed special tokens split out with
 * the whitespace around them, each chunk lower-cased, ASCII punctuation removed, whitespace collapsed, encoded
 * after an "<unk>" that is cut off again, EOS appended. `gemma` (GemmaTokenizer): control pieces split out, BOS/EOS
 * as configured. `xlmr` (XLMRobertaTokenizer): fairseq's ids (<s> 0, <pad> 1, </s> 2, <unk> 3, pieces one up,
 * <mask> last), "<s> text </s>", then the contract's swap of 0 and 1 so padding is id 0 (a typed <pad> is dropped:
 * open_clip masks it out). `nllb` (NllbTokenizer): the same ids, the config's added tokens (language codes, <mask>)
 * and "<source language code> text </s>". `t5` (T5Tokenizer): the model's ids, typed </s> <pad> <unk> split out, "text </s>" (a
 * typed <pad> dropped likewise). `clean: canonicalize` runs open_clip's cleaning first, `clean: whitespace` its cleaning
 * for Hugging Face tokenizers. Padding side and ids from the config.
 */
public final class SentencePieceTokenizer implements TextTokenizer {
    private static final String PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    private static final String XLMR_MASK = "<mask>";
    private static final String[] XLMR_SPECIALS = {"<s>", "<pad>", "</s>", "<unk>"};  // fairseq's ids 0..3

    final SentencePiece model;
    private final String family;
    private final boolean canonicalize, whitespace, addBos, addEos, left, lowerCase, xlmr;
    private final Map<String, Integer> added = new java.util.HashMap<String, Integer>();  // fairseq families' extras
    private final int prefixId;  // fairseq's id every text starts with (<s>, or NLLB's language code)
    private final int context;
    public final int bosTokenId, eosTokenId, padTokenId;
    private final String unkToken, padToken;
    private final int unkPrefix;
    private final Pattern split;
    private final Set<String> specials = new HashSet<String>();

    SentencePieceTokenizer(byte[] modelBytes, Map<String, Object> cfg) {
        model = new SentencePiece(modelBytes);
        family = (String) cfg.get("family");
        canonicalize = "canonicalize".equals(cfg.get("clean"));
        whitespace = "whitespace".equals(cfg.get("clean"));
        xlmr = "xlmr".equals(family) || "nllb".equals(family);  // fairseq's dictionary, padding swapped to 0
        addBos = Boolean.TRUE.equals(cfg.get("add_bos"));
        addEos = !Boolean.FALSE.equals(cfg.get("add_eos"));
        left = "left".equals(cfg.get("padding_side"));
        lowerCase = !Boolean.FALSE.equals(cfg.get("do_lower_case"));
        context = ((Number) cfg.get("context_length")).intValue();
        eosTokenId = ((Number) cfg.get("eos_token_id")).intValue();
        padTokenId = ((Number) cfg.get("pad_token_id")).intValue();
        Object bos = cfg.get("bos_token_id");
        bosTokenId = bos == null ? -1 : ((Number) bos).intValue();
        unkToken = (String) cfg.get("unk_token");
        padToken = (String) cfg.get("pad_token");
        if ("siglip".equals(family)) {
            specials.addAll(Arrays.asList((String) cfg.get("eos_token"), unkToken, (String) cfg.get("pad_token")));
            unkPrefix = model.encode(unkToken).size();
        } else if ("t5".equals(family)) {
            specials.addAll(Arrays.asList((String) cfg.get("eos_token"), unkToken, (String) cfg.get("pad_token")));
            unkPrefix = 0;
        } else if (xlmr) {
            Object listed = cfg.get("added_tokens");
            if (listed instanceof Map) {
                for (Map.Entry<?, ?> e : ((Map<?, ?>) listed).entrySet()) added.put((String) e.getKey(), ((Number) e.getValue()).intValue());
            } else {
                added.put(XLMR_MASK, model.size() + 1);
            }
            specials.addAll(Arrays.asList(XLMR_SPECIALS));
            specials.addAll(added.keySet());
            unkPrefix = 0;
        } else if ("gemma".equals(family)) {
            for (int i = 0; i < model.size(); i++) if (model.types[i] == SentencePiece.CONTROL) specials.add(model.pieces[i]);
            specials.add(unkToken);
            unkPrefix = 0;
        } else {
            throw new IllegalArgumentException("tokenizer_config.json: family '" + family + "' is not siglip, gemma, xlmr, nllb or t5");
        }
        Object prefix = cfg.get("prefix_token");
        prefixId = xlmr ? xlmrSpecial(prefix == null ? "<s>" : (String) prefix) : -1;
        List<String> sorted = new ArrayList<String>(specials);
        java.util.Collections.sort(sorted, new java.util.Comparator<String>() {
            @Override
            public int compare(String a, String b) {
                return b.length() - a.length();
            }
        });
        StringBuilder alternatives = new StringBuilder();
        for (String s : sorted) alternatives.append(alternatives.length() > 0 ? "|" : "").append(Pattern.quote(s));
        split = Pattern.compile("(" + alternatives + ")");
    }

    public static SentencePieceTokenizer fromDirectory(File dir) throws IOException {
        Map<String, Object> cfg = Json.object(Files2.readString(Files2.open(new File(dir, "tokenizer_config.json"))));
        byte[] bytes = Files2.readBytes(Files2.open(new File(dir, "spiece.model")));
        return new SentencePieceTokenizer(bytes, cfg);
    }

    @Override
    public int contextLength() {
        return context;
    }

    private static int swapped(int id) {
        return id == 0 ? 1 : id == 1 ? 0 : id;
    }

    /** open_clip's clean "canonicalize": basic clean, "_" to space, ASCII punctuation removed, lower, collapsed. */
    static String canonicalize(String text) {
        // basic_clean's strip() is subsumed by the final whitespace collapse
        String basic = TextCleaner.unescapeHtml(TextCleaner.unescapeHtml(TextCleaner.fixText(text)));
        return TextCleaner.collapseWhitespace(removePunctuation(basic.replace('_', ' ')).toLowerCase(Locale.ROOT));
    }

    private static String removePunctuation(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) if (PUNCTUATION.indexOf(s.charAt(i)) < 0) b.append(s.charAt(i));
        return b.toString();
    }

    private List<Integer> siglipChunk(String chunk) {
        if (lowerCase) chunk = chunk.toLowerCase(Locale.ROOT);
        // re.sub(r"\s+", " ", ...).strip() is " ".join(split()): Python's whitespace, not Java's
        chunk = TextCleaner.collapseWhitespace(removePunctuation(chunk));
        List<Integer> ids = model.encode(unkToken + chunk);
        return ids.size() >= unkPrefix ? ids.subList(unkPrefix, ids.size()) : ids;
    }

    /** A fairseq family's id of a special: fairseq's 0..3, or an added token's (<mask>, language codes). */
    private int xlmrSpecial(String token) {
        int i = Arrays.asList(XLMR_SPECIALS).indexOf(token);
        if (i >= 0) return i;
        Integer id = added.get(token);
        if (id == null) throw new IllegalArgumentException("tokenizer_config.json: '" + token + "' is not one of its tokens");
        return id;
    }

    /** Token ids of text without BOS/EOS or padding (fairseq's for xlmr, before the contract's swap). */
    public List<Integer> encode(String text) {
        if (canonicalize) text = canonicalize(text);
        // open_clip's clean "whitespace": basic_clean (ftfy, HTML unescaped twice, strip), whitespace collapsed
        if (whitespace) text = TextCleaner.collapseWhitespace(TextCleaner.unescapeHtml(TextCleaner.unescapeHtml(TextCleaner.fixText(text))));
        boolean siglip = "siglip".equals(family);
        if (siglip) text = SentencePiece.SPACE + text.replace(SentencePiece.SPACE, " ");
        List<Integer> ids = new ArrayList<Integer>();
        Set<Integer> typed = new HashSet<Integer>();
        Matcher m = split.matcher(text);
        int last = 0;
        while (true) {
            boolean found = m.find();
            String chunk = text.substring(last, found ? m.start() : text.length());
            // SigLIP's added tokens strip the whitespace around them (AddedToken lstrip/rstrip: Python's isspace)
            if (siglip) chunk = TextCleaner.stripPythonSpace(chunk, last > 0, found);
            if (!chunk.isEmpty()) {
                if (siglip) ids.addAll(siglipChunk(chunk));
                else if (xlmr) for (int id : model.encode(chunk)) ids.add(id == model.unkId ? 3 : id + 1);
                else ids.addAll(model.encode(chunk));
            }
            if (!found) break;
            last = m.end();
            // a typed <pad>: masked out by open_clip (and skipped by RoBERTa's positions), so dropped
            if ((xlmr || "t5".equals(family)) && m.group(1).equals(padToken)) continue;
            typed.add(ids.size());
            ids.add(xlmr ? xlmrSpecial(m.group(1)) : model.pieceToId(m.group(1)));
        }
        if (siglip && ids.size() > 1 && typed.contains(1) && ids.get(0) == model.pieceToId(SentencePiece.SPACE)) {
            ids = new ArrayList<Integer>(ids.subList(1, ids.size()));
        }
        return ids;
    }

    @Override
    public int[] tokenize(String text) {
        List<Integer> ids = encode(text);
        if (xlmr) {
            int[] row = new int[context];  // contract ids: fairseq's <pad> (1) is 0, its <s> (0) is 1
            int n = Math.min(ids.size(), context - 2);
            row[0] = swapped(prefixId);
            for (int i = 0; i < n; i++) row[i + 1] = swapped(ids.get(i));
            row[n + 1] = 2;
            return row;
        }
        int room = context - (addBos ? 1 : 0);
        List<Integer> out = new ArrayList<Integer>();
        if (addBos) out.add(bosTokenId);
        if ("siglip".equals(family)) {
            if (ids.size() + 1 > room) ids = ids.subList(0, room - 1);
            out.addAll(ids);
            if (ids.isEmpty() || ids.get(ids.size() - 1) != eosTokenId) out.add(eosTokenId);
        } else {
            if (ids.size() > room - (addEos ? 1 : 0)) ids = ids.subList(0, room - (addEos ? 1 : 0));
            out.addAll(ids);
            if (addEos) out.add(eosTokenId);
        }
        int[] row = new int[context];
        Arrays.fill(row, padTokenId);
        int offset = left ? context - out.size() : 0;
        for (int i = 0; i < out.size(); i++) row[offset + i] = out.get(i);
        return row;
    }
}
