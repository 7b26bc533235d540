package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The contract's index/ folder: index.json, paths.txt and embeddings.f32.npy (float32 [N, D],
 * L2-normalised, row i = line i of paths.txt). The float rows are memory-mapped, not copied, so a
 * gallery costs address space rather than heap. Search is exact inner product (cosine); for sq8 /
 * ivfpq indexes the toolkit's float file is the same one it re-ranks with, so exact search here
 * returns what those kinds return whenever their short list holds the true top-k.
 */
public final class GalleryIndex {
    public static final String FORMAT = "mcad-index/2";
    public final int count;
    public final int dim;
    public final String kind;
    public final List<String> paths;
    private final FloatBuffer rows;

    private GalleryIndex(int count, int dim, String kind, List<String> paths, FloatBuffer rows) {
        this.count = count;
        this.dim = dim;
        this.kind = kind;
        this.paths = paths;
        this.rows = rows;
    }

    public static GalleryIndex open(File dir) throws IOException {
        Map<String, Object> meta = Json.object(Files2.readString(Files2.open(new File(dir, "index.json"))));
        if (!FORMAT.equals(meta.get("format"))) {
            throw new IOException(dir + "/index.json has format " + meta.get("format") + ", expected " + FORMAT);
        }
        List<String> paths = new ArrayList<String>();
        for (String line : Files2.readString(Files2.open(new File(dir, "paths.txt"))).split("\n")) {
            if (!line.isEmpty()) paths.add(decodePath(line));
        }
        RandomAccessFile file = new RandomAccessFile(new File(dir, "embeddings.f32.npy"), "r");
        try {
            FileChannel channel = file.getChannel();
            ByteBuffer map = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size()).order(ByteOrder.LITTLE_ENDIAN);
            int[] shape = npyShape(map);
            if (shape[0] != paths.size()) {
                throw new IOException("embeddings.f32.npy has " + shape[0] + " rows but paths.txt " + paths.size());
            }
            return new GalleryIndex(shape[0], shape[1], String.valueOf(meta.get("kind")), paths,
                map.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer());
        } finally {
            file.close();   // the mapping stays valid after the channel closes
        }
    }

    /**
     * One paths.txt line back to the file name: the toolkit writes '%', control characters (a newline in a
     * name) and bytes of non-UTF-8 names as %XX so no name can split a line; undecodable bytes become U+FFFD.
     */
    public static String decodePath(String line) {
        if (line.indexOf('%') < 0) return line;
        byte[] utf8 = line.getBytes(StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream(utf8.length);
        for (int i = 0; i < utf8.length; i++) {
            if (utf8[i] == '%' && i + 2 < utf8.length && hex(utf8[i + 1]) >= 0 && hex(utf8[i + 2]) >= 0) {
                out.write(hex(utf8[i + 1]) * 16 + hex(utf8[i + 2]));
                i += 2;
            } else {
                out.write(utf8[i]);
            }
        }
        return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }

    private static int hex(byte c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    }

    /** Reads the .npy header, leaves the buffer positioned at the data, returns {rows, cols}. */
    static int[] npyShape(ByteBuffer buf) throws IOException {
        int[] shape = Npy.header(buf, "<f4", "embeddings.f32.npy");
        if (shape.length != 2) throw new IOException("embeddings.f32.npy must be 2-D float32 [N, D]");
        return shape;
    }

    public static final class Hit {
        public final int row;
        public final float score;
        public final String path;

        Hit(int row, float score, String path) {
            this.row = row;
            this.score = score;
            this.path = path;
        }
    }

    /** Top-k rows by inner product with the (L2-normalised) query, best first; ties go to the lower row. */
    public Hit[] search(float[] query, int k) {
        if (query.length != dim) throw new IllegalArgumentException("query has " + query.length + " dims, index " + dim);
        k = Math.min(k, count);
        final float[] scores = new float[count];
        for (int r = 0; r < count; r++) {
            double s = 0;
            int base = r * dim;
            for (int d = 0; d < dim; d++) s += (double) rows.get(base + d) * query[d];
            scores[r] = (float) s;
        }
        // A bounded min-heap would be O(N log k); N is one gallery, so a partial selection is plenty. (No lambdas in
        // the core: the offline APK build compiles against API 23's android.jar, which has no java.lang.invoke.)
        java.util.Comparator<Integer> byScore = new java.util.Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                return GalleryIndex.compare(scores, a, b);
            }
        };
        Integer[] best = new Integer[k];
        int filled = 0;
        for (int r = 0; r < count; r++) {
            if (filled < k) {
                best[filled++] = r;
                if (filled == k) Arrays.sort(best, byScore);
            } else if (compare(scores, r, best[k - 1]) < 0) {
                int i = k - 1;
                while (i > 0 && compare(scores, r, best[i - 1]) < 0) { best[i] = best[i - 1]; i--; }
                best[i] = r;
            }
        }
        if (filled < k) Arrays.sort(best, 0, filled, byScore);
        Hit[] hits = new Hit[filled];
        for (int i = 0; i < filled; i++) hits[i] = new Hit(best[i], scores[best[i]], paths.get(best[i]));
        return hits;
    }

    private static int compare(float[] scores, int a, int b) {
        int c = Float.compare(scores[b], scores[a]);
        return c != 0 ? c : Integer.compare(a, b);
    }
}
