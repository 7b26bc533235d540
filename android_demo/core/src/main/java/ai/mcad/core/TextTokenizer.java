package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.util.Map;

/**
 * What the app needs from a tokenizer, whichever kind the bundle's tokenizer/tokenizer_config.json names
 * ("type": clip_bpe, wordpiece or sentencepiece). Padding is id 0 for CLIP BPE and WordPiece, so a row's real
 * length (up to and including EOT / [SEP]) and a masked text encoder's attention_mask follow from the ids alone, as
 * in the Python toolkit (runtime.encoders.real_lengths / attention_mask). SigLIP's towers see every position.
 */
public interface TextTokenizer {
    /** int ids [contextLength()], padded with 0. */
    int[] tokenize(String text);

    int contextLength();

    /** Reads tokenizer/ and returns the tokenizer its config names. */
    static TextTokenizer fromDirectory(File dir) throws IOException {
        Map<String, Object> cfg = Json.object(Files2.readString(Files2.open(new File(dir, "tokenizer_config.json"))));
        Object type = cfg.get("type");
        if ("wordpiece".equals(type)) return WordPieceTokenizer.fromDirectory(dir);
        if ("sentencepiece".equals(type)) return SentencePieceTokenizer.fromDirectory(dir);
        if (type == null || "clip_bpe".equals(type)) return ClipTokenizer.fromDirectory(dir);
        throw new IOException("tokenizer_config.json names tokenizer type '" + type + "'; this core knows clip_bpe, wordpiece and sentencepiece");
    }

    /** Tokens up to and including EOT / [SEP]: the last non-zero id + 1. */
    static int realLength(int[] ids) {
        for (int i = ids.length - 1; i >= 0; i--) if (ids[i] != 0) return i + 1;
        return 0;
    }

    /** 1 up to and including EOT / [SEP], 0 on the padding after it. */
    static int[] attentionMask(int[] ids) {
        int[] mask = new int[ids.length];
        java.util.Arrays.fill(mask, 0, realLength(ids), 1);
        return mask;
    }
}
