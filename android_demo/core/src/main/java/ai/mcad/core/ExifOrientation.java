package ai.mcad.core;

/**
 * EXIF orientation of a JPEG and the transpose that makes its pixels upright, as Pillow's
 * ImageOps.exif_transpose does for the toolkit's index and calibration (phone cameras store the sensor's
 * rows and a tag saying how to turn them). Android's BitmapFactory ignores the tag, so the app reads it
 * here and turns the decoded pixels before preprocessing; the golden vectors check both agree.
 */
public final class ExifOrientation {
    private ExifOrientation() {}

    /** The orientation tag (1..8) of a JPEG's EXIF block; 1 (as stored) when there is none or it is malformed. */
    public static int read(byte[] jpeg) {
        if (jpeg.length < 4 || (jpeg[0] & 0xFF) != 0xFF || (jpeg[1] & 0xFF) != 0xD8) return 1;
        int pos = 2;
        while (pos + 4 <= jpeg.length) {
            if ((jpeg[pos] & 0xFF) != 0xFF) return 1;
            int marker = jpeg[pos + 1] & 0xFF;
            if (marker == 0xD9 || marker == 0xDA) return 1;          // end of image / start of scan: no EXIF
            int length = ((jpeg[pos + 2] & 0xFF) << 8) | (jpeg[pos + 3] & 0xFF);
            if (length < 2 || pos + 2 + length > jpeg.length) return 1;
            int data = pos + 4;
            if (marker == 0xE1 && length >= 8 && jpeg[data] == 'E' && jpeg[data + 1] == 'x' && jpeg[data + 2] == 'i'
                    && jpeg[data + 3] == 'f' && jpeg[data + 4] == 0 && jpeg[data + 5] == 0) {
                return fromTiff(jpeg, data + 6, pos + 2 + length);
            }
            pos += 2 + length;
        }
        return 1;
    }

    private static int fromTiff(byte[] b, int tiff, int end) {
        if (tiff + 8 > end) return 1;
        boolean little = b[tiff] == 'I' && b[tiff + 1] == 'I';
        if (!little && !(b[tiff] == 'M' && b[tiff + 1] == 'M')) return 1;
        long ifd = u32(b, tiff + 4, little);
        if (ifd < 8 || tiff + ifd + 2 > end) return 1;
        int at = (int) (tiff + ifd);
        int entries = u16(b, at, little);
        for (int i = 0; i < entries; i++) {
            int e = at + 2 + 12 * i;
            if (e + 12 > end) return 1;
            if (u16(b, e, little) == 0x0112 && u16(b, e + 2, little) == 3) {   // Orientation, SHORT
                int value = u16(b, e + 8, little);
                return value >= 1 && value <= 8 ? value : 1;
            }
        }
        return 1;
    }

    private static int u16(byte[] b, int at, boolean little) {
        int lo = b[at] & 0xFF, hi = b[at + 1] & 0xFF;
        return little ? lo | (hi << 8) : (lo << 8) | hi;
    }

    private static long u32(byte[] b, int at, boolean little) {
        long v = 0;
        for (int i = 0; i < 4; i++) v |= (long) (b[at + (little ? i : 3 - i)] & 0xFF) << (8 * i);
        return v;
    }

    /** Whether an orientation swaps width and height (5..8: a quarter turn, possibly mirrored). */
    public static boolean swapsAxes(int orientation) {
        return orientation >= 5 && orientation <= 8;
    }

    /**
     * The upright pixels of a w x h ARGB image stored with `orientation`; the result is h x w when
     * swapsAxes(orientation). Same mapping as Pillow's exif_transpose (2 mirror, 3 rotate 180, 4 flip,
     * 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
     */
    public static int[] upright(int[] argb, int w, int h, int orientation) {
        if (orientation < 2 || orientation > 8) return argb;
        int ow = swapsAxes(orientation) ? h : w, oh = swapsAxes(orientation) ? w : h;
        int[] out = new int[argb.length];
        for (int y = 0; y < oh; y++) {
            for (int x = 0; x < ow; x++) {
                int sx, sy;
                switch (orientation) {
                    case 2: sx = w - 1 - x; sy = y; break;
                    case 3: sx = w - 1 - x; sy = h - 1 - y; break;
                    case 4: sx = x; sy = h - 1 - y; break;
                    case 5: sx = y; sy = x; break;
                    case 6: sx = y; sy = h - 1 - x; break;
                    case 7: sx = w - 1 - y; sy = h - 1 - x; break;
                    default: sx = w - 1 - y; sy = x; break;      // 8
                }
                out[y * ow + x] = argb[sy * w + sx];
            }
        }
        return out;
    }
}
