package ai.mcad.demo;

import ai.mcad.core.GalleryIndex;
import ai.mcad.core.TextTokenizer;
import android.os.Build;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The in-app benchmark (`adb shell am start -n ai.mcad.demo/.MainActivity --ez bench true`): the bundle's query list
 * (bundle.json `bench`, the queries `mcad-export bench` times on the host), `warmup` untimed passes then `repeats`
 * timed ones, each query tokenized, encoded and searched as the app does. Writes device-bench.json (format
 * mcad-device-bench/1) to the app's external files folder, for `adb pull` and `mcad-export report DIR --device-bench`.
 */
final class DeviceBench {
    static final String FORMAT = "mcad-device-bench/1";
    static final String FILE = "device-bench.json";

    private DeviceBench() {}

    static File run(Map<String, Object> bundle, TextTokenizer tokenizer, TextEncoder encoder, GalleryIndex index,
                    String runtime, String accelerator, File outDir) throws Exception {
        @SuppressWarnings("unchecked")
        Map<String, Object> spec = (Map<String, Object>) bundle.get("bench");
        @SuppressWarnings("unchecked")
        List<String> queries = (List<String>) spec.get("queries");
        int warmup = ((Number) spec.get("warmup")).intValue();
        int repeats = ((Number) spec.get("repeats")).intValue();
        for (int w = 0; w < warmup; w++) for (String q : queries) index.search(encoder.encode(tokenizer.tokenize(q)), 10);
        int n = queries.size() * repeats;
        double[] tokenize = new double[n], encode = new double[n], search = new double[n], total = new double[n];
        int i = 0;
        for (int r = 0; r < repeats; r++) {
            for (String q : queries) {
                long t0 = System.nanoTime();
                int[] ids = tokenizer.tokenize(q);
                long t1 = System.nanoTime();
                float[] e = encoder.encode(ids);
                long t2 = System.nanoTime();
                index.search(e, 10);
                long t3 = System.nanoTime();
                tokenize[i] = (t1 - t0) / 1e6;
                encode[i] = (t2 - t1) / 1e6;
                search[i] = (t3 - t2) / 1e6;
                total[i] = (t3 - t0) / 1e6;
                i++;
            }
        }
        long[] memory = Memory.rssAndPeakKb();
        String soc = Build.VERSION.SDK_INT >= 31 ? socModel() : Build.HARDWARE;
        StringBuilder json = new StringBuilder();
        json.append("{\n \"format\": ").append(quote(FORMAT))
            .append(",\n \"student\": ").append(quote(String.valueOf(bundle.get("student"))))
            .append(",\n \"device\": {\"manufacturer\": ").append(quote(Build.MANUFACTURER))
            .append(", \"model\": ").append(quote(Build.MODEL))
            .append(", \"soc\": ").append(quote(soc))
            .append(", \"abi\": ").append(quote(Build.SUPPORTED_ABIS[0]))
            .append(", \"sdk\": ").append(Build.VERSION.SDK_INT).append("}")
            .append(",\n \"runtime\": ").append(quote(runtime))
            .append(",\n \"accelerator\": ").append(quote(accelerator))
            .append(",\n \"queries\": ").append(queries.size())
            .append(",\n \"repeats\": ").append(repeats)
            .append(",\n \"gallery_size\": ").append(index.count)
            .append(",\n \"latency_ms\": {")
            .append("\"tokenize\": ").append(stats(tokenize))
            .append(", \"encode\": ").append(stats(encode))
            .append(", \"search\": ").append(stats(search))
            .append(", \"total\": ").append(stats(total)).append("}")
            .append(",\n \"memory_mb\": {\"vm_rss\": ").append(String.format(Locale.ROOT, "%.1f", memory[0] / 1024.0))
            .append(", \"vm_hwm\": ").append(String.format(Locale.ROOT, "%.1f", memory[1] / 1024.0)).append("}\n}\n");
        File out = new File(outDir, FILE);
        File tmp = new File(outDir, FILE + ".tmp");
        OutputStream s = new FileOutputStream(tmp);
        try {
            s.write(json.toString().getBytes(StandardCharsets.UTF_8));
        } finally {
            s.close();
        }
        if (!tmp.renameTo(out)) throw new IOException("cannot write " + out);
        return out;
    }

    private static String socModel() {
        try {
            return (String) Build.class.getField("SOC_MODEL").get(null); // API 31; compiled against API 23
        } catch (ReflectiveOperationException e) {
            return Build.HARDWARE;
        }
    }

    static String stats(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return String.format(Locale.ROOT, "{\"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f}",
            percentile(v, 50), percentile(v, 90), percentile(v, 99));
    }

    /** Linear interpolation between closest ranks, as numpy's default percentile. */
    static double percentile(double[] sorted, double p) {
        if (sorted.length == 0) return Double.NaN;
        double rank = p / 100 * (sorted.length - 1);
        int lo = (int) Math.floor(rank), hi = (int) Math.ceil(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20) out.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
            else out.append(c);
        }
        return out.append('"').toString();
    }
}
