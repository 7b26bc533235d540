package ai.mcad.core;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;

/**
 * The token table of a text graph compiled to start at the embeddings (bundle.json `host_gather`; the toolkit's
 * compile/host_gather.py): int8 rows [vocab, width] and one float32 scale per row, both .npy files, memory-mapped so
 * a query makes resident only the rows it looks up (a 256k-row SigLIP 2 table stays on flash). gather() computes
 * what the cut Gather fed the graph: row * scale, in float32, as runtime/token_table.py does.
 */
public final class HostTokenTable {
    public final int vocab;
    public final int width;
    private final ByteBuffer rows;
    private final FloatBuffer scales;

    private HostTokenTable(int vocab, int width, ByteBuffer rows, FloatBuffer scales) {
        this.vocab = vocab;
        this.width = width;
        this.rows = rows;
        this.scales = scales;
    }

    public static HostTokenTable open(File rowsFile, File scalesFile) throws IOException {
        ByteBuffer rowMap = map(rowsFile);
        int[] shape = Npy.header(rowMap, "|i1", rowsFile.getName());
        if (shape.length != 2) throw new IOException(rowsFile.getName() + " must be 2-D int8 [vocab, width]");
        ByteBuffer scaleMap = map(scalesFile);
        int[] scaleShape = Npy.header(scaleMap, "<f4", scalesFile.getName());
        if (scaleShape.length != 1 || scaleShape[0] != shape[0]) {
            throw new IOException(scalesFile.getName() + " must hold one float32 scale per row of " + rowsFile.getName());
        }
        return new HostTokenTable(shape[0], shape[1], rowMap.slice(),
            scaleMap.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer());
    }

    private static ByteBuffer map(File file) throws IOException {
        RandomAccessFile raf = new RandomAccessFile(file, "r");
        try {
            FileChannel channel = raf.getChannel();
            return channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size()).order(ByteOrder.LITTLE_ENDIAN);
        } finally {
            raf.close();   // the mapping stays valid after the channel closes
        }
    }

    /** float32 [ids.length * width]: the rows of `ids`, each times its scale (the graph input token_embeds [1, L, width]). */
    public float[] gather(int[] ids) {
        float[] out = new float[ids.length * width];
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= vocab) {
                throw new IllegalArgumentException("token id " + id + " is outside the " + vocab + "-row token table");
            }
            float scale = scales.get(id);
            int base = id * width;   // vocab * width < 2^31: a larger table is refused by Npy.header
            for (int j = 0; j < width; j++) out[t * width + j] = rows.get(base + j) * scale;
        }
        return out;
    }
}
