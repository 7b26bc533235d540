package ai.mcad.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The .npy header (format v1-v3) of the files the toolkit writes with numpy.save: C order, one dtype, a shape. */
final class Npy {
    private static final Pattern SHAPE = Pattern.compile("'shape': \\(([0-9, ]*)\\)");

    private Npy() {}

    /**
     * Reads the header, checks its dtype is `descr` in C order, leaves the buffer at the data and returns the shape.
     * A file whose element count does not fit one Java buffer (2^31 - 1) or whose data is cut short is refused.
     */
    static int[] header(ByteBuffer buf, String descr, String name) throws IOException {
        byte[] magic = new byte[6];
        if (buf.remaining() < 10) throw new IOException(name + " is not a .npy file");
        buf.get(magic);
        if (magic[0] != (byte) 0x93 || !new String(magic, 1, 5, StandardCharsets.US_ASCII).equals("NUMPY")) {
            throw new IOException(name + " is not a .npy file");
        }
        int major = buf.get() & 0xff;
        buf.get();
        int headerLen = major == 1 ? (buf.getShort() & 0xffff) : buf.getInt();
        if (headerLen < 0 || headerLen > buf.remaining()) throw new IOException(name + " has a cut .npy header");
        byte[] header = new byte[headerLen];
        buf.get(header);
        String h = new String(header, StandardCharsets.ISO_8859_1);
        if (!h.contains("'descr': '" + descr + "'") || h.contains("'fortran_order': True")) {
            throw new IOException(name + " must be " + descr + " in C order, header: " + h.trim());
        }
        Matcher m = SHAPE.matcher(h);
        if (!m.find()) throw new IOException(name + " has no shape in its header: " + h.trim());
        String[] parts = m.group(1).split(",");
        int count = 0;
        for (String p : parts) if (!p.trim().isEmpty()) count++;
        int[] shape = new int[count];
        long elements = 1;
        int k = 0;
        for (String p : parts) {
            if (p.trim().isEmpty()) continue;
            long dim = Long.parseLong(p.trim());
            elements *= dim;
            if (dim > Integer.MAX_VALUE || elements > Integer.MAX_VALUE) {
                throw new IOException(name + " is too large for one buffer: " + h.trim());
            }
            shape[k++] = (int) dim;
        }
        int itemSize = Integer.parseInt(descr.substring(2));
        if ((long) buf.remaining() < elements * itemSize) {
            throw new IOException(name + " holds " + buf.remaining() + " data bytes, its header says " + elements * itemSize);
        }
        return shape;
    }
}
