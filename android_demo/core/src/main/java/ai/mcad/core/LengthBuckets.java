package ai.mcad.core;

import java.util.Arrays;

/**
 * Static-shape NPU graphs cost the same for a 5-token query as for a 77-token one, so mcad-export
 * compiles the text encoder at a few lengths (bundle.json: encoders.text.length_buckets). A query
 * runs on the shortest bucket that holds it up to EOT; positions after EOT cannot change a causal
 * text encoder's embedding, which the toolkit proved for each bucket before shipping it.
 * Same choice as mcad_export.runtime.encoders.pick_bucket (checked by the golden vectors).
 */
public final class LengthBuckets {
    private LengthBuckets() {}

    /** Index into {@code sizes} (ascending) of the shortest bucket holding {@code realLength} tokens, or -1: the full-context encoder. */
    public static int pick(int[] sizes, int realLength) {
        for (int i = 1; i < sizes.length; i++) {
            if (sizes[i] <= sizes[i - 1]) throw new IllegalArgumentException("bucket sizes must ascend: " + Arrays.toString(sizes));
        }
        for (int i = 0; i < sizes.length; i++) if (sizes[i] >= realLength) return i;
        return -1;
    }

    /** The ids a bucket of {@code tokens} positions is fed: cut to its length (the tokenizer pads after EOT with zeros). */
    public static int[] fit(int[] ids, int tokens) {
        return Arrays.copyOf(ids, tokens);
    }
}
