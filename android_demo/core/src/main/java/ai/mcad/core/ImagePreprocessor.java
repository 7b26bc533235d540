package ai.mcad.core;

import java.util.List;
import java.util.Map;

/**
 * The manifest's image preprocessing on decoded RGB pixels, reproducing the toolkit's PIL path:
 * resize (shortest side to S, or squash) with Pillow's separable resampling, centre crop, then
 * x / 255, (x - mean) / std, laid out CHW. Pillow's 8-bit resampling is integer fixed-point with
 * rounding between the horizontal and vertical passes; it is copied here step for step so the
 * phone feeds the encoder what the gallery index was built from.
 */
public final class ImagePreprocessor {
    private static final int PRECISION_BITS = 32 - 8 - 2;
    public final int imageSize;
    public final String resizeMode;
    public final String interpolation;
    public final float[] mean;
    public final float[] std;

    public ImagePreprocessor(int imageSize, String resizeMode, String interpolation, float[] mean, float[] std) {
        this.imageSize = imageSize;
        this.resizeMode = resizeMode;
        this.interpolation = interpolation;
        this.mean = mean;
        this.std = std;
        support(interpolation);   // fail early on a filter this core does not have
    }

    /** From the manifest's "image" object. */
    public static ImagePreprocessor fromManifest(Map<String, Object> image) {
        Object mode = image.get("resize_mode"), interp = image.get("interpolation");
        return new ImagePreprocessor(((Number) image.get("image_size")).intValue(),
            mode == null ? "shortest" : (String) mode, interp == null ? "bicubic" : (String) interp,
            floats(image.get("mean")), floats(image.get("std")));
    }

    private static float[] floats(Object list) {
        List<?> values = (List<?>) list;
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) out[i] = ((Number) values.get(i)).floatValue();
        return out;
    }

    /** argb: packed 0xAARRGGBB pixels row by row (Android's Bitmap.getPixels); returns float[3 * S * S]. */
    public float[] preprocess(int[] argb, int width, int height) {
        int[][] rgb = new int[3][];
        for (int c = 0; c < 3; c++) rgb[c] = new int[width * height];
        for (int i = 0; i < width * height; i++) {
            rgb[0][i] = (argb[i] >> 16) & 0xff;
            rgb[1][i] = (argb[i] >> 8) & 0xff;
            rgb[2][i] = argb[i] & 0xff;
        }
        int w = width, h = height, s = imageSize;
        if ("squash".equals(resizeMode)) {
            rgb = resize(rgb, w, h, s, s);
            w = s;
            h = s;
        } else {
            if (w != s || h != s) {
                // torchvision Resize(int): shorter side -> S, longer side int(S * long / short)
                int nw, nh;
                if (w <= h) { nw = s; nh = (int) ((double) s * h / w); } else { nw = (int) ((double) s * w / h); nh = s; }
                if (nw != w || nh != h) {
                    rgb = resize(rgb, w, h, nw, nh);
                    w = nw;
                    h = nh;
                }
            }
        }
        int left = (int) Math.rint((w - s) / 2.0), top = (int) Math.rint((h - s) / 2.0);   // Python round(): half to even
        float[] out = new float[3 * s * s];
        for (int c = 0; c < 3; c++) {
            for (int y = 0; y < s; y++) {
                for (int x = 0; x < s; x++) {
                    int sy = y + top, sx = x + left;
                    // PIL's crop pads with black outside the image (only when S exceeds a side).
                    int v = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? rgb[c][sy * w + sx] : 0;
                    out[c * s * s + y * s + x] = ((float) v / 255.0f - mean[c]) / std[c];
                }
            }
        }
        return out;
    }

    private static double support(String interpolation) {
        if ("bicubic".equals(interpolation)) return 2.0;
        if ("bilinear".equals(interpolation)) return 1.0;
        if ("lanczos".equals(interpolation)) return 3.0;
        throw new IllegalArgumentException("interpolation '" + interpolation + "' is not supported by the core "
            + "(bicubic, bilinear, lanczos are)");
    }

    private double filter(double x) {
        if ("bilinear".equals(interpolation)) {
            x = Math.abs(x);
            return x < 1.0 ? 1.0 - x : 0.0;
        }
        if ("lanczos".equals(interpolation)) {
            return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
        }
        double a = -0.5;
        x = Math.abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    private static double sinc(double x) {
        if (x == 0.0) return 1.0;
        x = x * Math.PI;
        return Math.sin(x) / x;
    }

    /** Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, first input index, count, weights. */
    private int[][] coefficients(int inSize, int outSize, int[] bounds) {
        double scale = (double) inSize / outSize;
        double filterscale = Math.max(scale, 1.0);
        double support = support(interpolation) * filterscale;
        int ksize = (int) Math.ceil(support) * 2 + 1;
        int[][] kk = new int[outSize][ksize];
        for (int xx = 0; xx < outSize; xx++) {
            double center = (xx + 0.5) * scale;
            double ww = 0.0, ss = 1.0 / filterscale;
            int xmin = (int) (center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int) (center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            double[] k = new double[ksize];
            for (int x = 0; x < xmax; x++) {
                double w = filter((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++) {
                if (ww != 0.0) k[x] /= ww;
                kk[xx][x] = k[x] < 0 ? (int) (-0.5 + k[x] * (1 << PRECISION_BITS))
                                     : (int) (0.5 + k[x] * (1 << PRECISION_BITS));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return kk;
    }

    private static int clip8(int in) {
        if (in >= (1 << PRECISION_BITS << 8)) return 255;
        if (in <= 0) return 0;
        return in >> PRECISION_BITS;
    }

    /** Pillow's ImagingResample for 8-bit bands: horizontal pass (when the width changes), then vertical. */
    int[][] resize(int[][] planes, int w, int h, int outW, int outH) {
        int[] boundsH = new int[outW * 2], boundsV = new int[outH * 2];
        int[][] kkH = coefficients(w, outW, boundsH);
        int[][] kkV = coefficients(h, outH, boundsV);
        int[][] cur = planes;
        int curW = w;
        if (outW != w) {
            int[][] next = new int[3][outW * h];
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < h; y++) {
                    for (int xx = 0; xx < outW; xx++) {
                        int xmin = boundsH[xx * 2], xmax = boundsH[xx * 2 + 1];
                        int ss = 1 << (PRECISION_BITS - 1);
                        for (int x = 0; x < xmax; x++) ss += cur[c][y * curW + x + xmin] * kkH[xx][x];
                        next[c][y * outW + xx] = clip8(ss);
                    }
                }
            }
            cur = next;
            curW = outW;
        }
        if (outH != h) {
            int[][] next = new int[3][curW * outH];
            for (int c = 0; c < 3; c++) {
                for (int yy = 0; yy < outH; yy++) {
                    int ymin = boundsV[yy * 2], ymax = boundsV[yy * 2 + 1];
                    for (int x = 0; x < curW; x++) {
                        int ss = 1 << (PRECISION_BITS - 1);
                        for (int y = 0; y < ymax; y++) ss += cur[c][(y + ymin) * curW + x] * kkV[yy][y];
                        next[c][yy * curW + x] = clip8(ss);
                    }
                }
            }
            cur = next;
        }
        return cur;
    }
}
