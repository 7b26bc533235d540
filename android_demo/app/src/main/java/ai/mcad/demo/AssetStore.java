package ai.mcad.demo;

import ai.mcad.core.Json;
import android.content.Context;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/** Copies assets/mcad/ to app storage once per bundle (keyed by bundle.json), so files can be memory-mapped. */
final class AssetStore {
    private AssetStore() {}

    static File unpack(Context context) throws IOException {
        File dest = new File(context.getFilesDir(), "mcad");
        byte[] manifest = readAll(context.getAssets().open("mcad/bundle.json"));
        File stamp = new File(dest, "bundle.json");
        if (stamp.isFile() && Arrays.equals(readAll(new java.io.FileInputStream(stamp)), manifest)) return dest;
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> files =
            (List<Map<String, Object>>) Json.object(new String(manifest, StandardCharsets.UTF_8)).get("files");
        for (Map<String, Object> f : files) {
            String path = (String) f.get("path");
            File out = new File(dest, path);
            File parent = out.getParentFile();
            if (parent != null && !parent.isDirectory() && !parent.mkdirs()) throw new IOException("cannot create " + parent);
            copy(context.getAssets().open("mcad/" + path), out);
        }
        // Last: an interrupted copy is redone on the next start.
        OutputStream s = new FileOutputStream(stamp);
        try {
            s.write(manifest);
        } finally {
            s.close();
        }
        return dest;
    }

    private static void copy(InputStream in, File out) throws IOException {
        OutputStream o = new FileOutputStream(out);
        try {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) o.write(buf, 0, n);
        } finally {
            o.close();
            in.close();
        }
    }

    static byte[] readAll(InputStream in) throws IOException {
        try {
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) out.write(buf, 0, n);
            return out.toByteArray();
        } finally {
            in.close();
        }
    }
}
