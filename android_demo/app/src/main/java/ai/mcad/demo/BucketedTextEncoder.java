package ai.mcad.demo;

import ai.mcad.core.LengthBuckets;
import ai.mcad.core.TextTokenizer;
import java.util.List;

/**
 * Static NPU graphs at a few lengths (bundle.json `length_buckets`): each query runs on the shortest bucket
 * holding it up to EOT, fed its ids cut to that length; longer queries run on `full`.
 */
final class BucketedTextEncoder implements TextEncoder {
    private final int[] sizes;
    private final List<TextEncoder> buckets;
    private final TextEncoder full;

    BucketedTextEncoder(int[] sizes, List<TextEncoder> buckets, TextEncoder full) {
        this.sizes = sizes;
        this.buckets = buckets;
        this.full = full;
    }

    @Override
    public float[] encode(int[] ids) throws Exception {
        int i = LengthBuckets.pick(sizes, TextTokenizer.realLength(ids));
        return i < 0 ? full.encode(ids) : buckets.get(i).encode(LengthBuckets.fit(ids, sizes[i]));
    }

    @Override
    public void close() {
        for (TextEncoder b : buckets) b.close();
        full.close();
    }
}
