package ai.mcad.demo;

import java.io.BufferedReader;
import java.io.FileReader;
import java.io.IOException;

/** VmRSS / VmHWM of this process in MB, read from the kernel as the toolkit's bench reads them. */
final class Memory {
    private Memory() {}

    static long[] rssAndPeakKb() {
        long rss = 0, peak = 0;
        try (BufferedReader r = new BufferedReader(new FileReader("/proc/self/status"))) {
            for (String line; (line = r.readLine()) != null; ) {
                if (line.startsWith("VmRSS:")) rss = kb(line);
                if (line.startsWith("VmHWM:")) peak = kb(line);
            }
        } catch (IOException e) {
            return new long[] {0, 0};
        }
        return new long[] {rss, peak};
    }

    static String line() {
        long[] m = rssAndPeakKb();
        return "RSS " + m[0] / 1024 + " MB, peak " + m[1] / 1024 + " MB";
    }

    private static long kb(String line) {
        String[] parts = line.substring(line.indexOf(':') + 1).trim().split("\\s+");
        try {
            return Long.parseLong(parts[0]);
        } catch (NumberFormatException e) {
            return 0;
        }
    }
}
