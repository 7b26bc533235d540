package ai.mcad.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.zip.GZIPInputStream;

/** Java 8 has no Files.readString; Android has no java.nio.file before API 26. A .gz twin is read transparently. */
final class Files2 {
    private Files2() {}

    static InputStream open(File file) throws IOException {
        if (file.isFile()) return new FileInputStream(file);
        File gz = new File(file.getPath() + ".gz");
        if (gz.isFile()) return new GZIPInputStream(new FileInputStream(gz));
        throw new IOException(file + " is missing (the bundle's tokenizer/ or index/ folder is incomplete)");
    }

    static byte[] readBytes(InputStream in) throws IOException {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) out.write(buf, 0, n);
            return out.toByteArray();
        } finally {
            in.close();
        }
    }

    static String readString(InputStream in) throws IOException {
        return new String(readBytes(in), StandardCharsets.UTF_8);
    }
}
