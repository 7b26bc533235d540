package ai.mcad.core;

import java.text.Normalizer;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * open_clip's "lower" cleaning: ftfy.fix_text, html.unescape twice, whitespace collapsed, lowercased.
 *
 * ftfy is reproduced for the rules that change ordinary text: HTML entities (repeated until stable
 * when the text has no '<', as ftfy's "auto" mode does), C1 controls read as Windows-1252, Latin
 * ligatures, full-width forms, curly quotes, control characters and NFC. Not reproduced: ftfy's
 * mojibake repair (fix_encoding), and named entities outside {@link #ENTITIES}; README lists them.
 */
public final class TextCleaner {
    private TextCleaner() {}

    static final Map<String, String> ENTITIES = new HashMap<String, String>();
    private static final String[] ENTITY_TABLE = {
        "amp", "&", "lt", "<", "gt", ">", "quot", "\"", "apos", "'", "nbsp", "\u00a0", "copy", "\u00a9",
        "reg", "\u00ae", "trade", "\u2122", "hellip", "\u2026", "mdash", "\u2014", "ndash", "\u2013",
        "lsquo", "\u2018", "rsquo", "\u2019", "ldquo", "\u201c", "rdquo", "\u201d", "bull", "\u2022",
        "middot", "\u00b7", "deg", "\u00b0", "euro", "\u20ac", "pound", "\u00a3", "yen", "\u00a5", "cent", "\u00a2",
        "sect", "\u00a7", "para", "\u00b6", "times", "\u00d7", "divide", "\u00f7", "laquo", "\u00ab",
        "raquo", "\u00bb", "iexcl", "\u00a1", "iquest", "\u00bf", "eacute", "\u00e9", "egrave", "\u00e8",
        "aacute", "\u00e1", "agrave", "\u00e0", "uuml", "\u00fc", "ouml", "\u00f6", "auml", "\u00e4",
        "szlig", "\u00df", "ntilde", "\u00f1", "ccedil", "\u00e7", "oacute", "\u00f3", "iacute", "\u00ed",
        "uacute", "\u00fa", "frac12", "\u00bd", "frac14", "\u00bc", "plusmn", "\u00b1", "micro", "\u00b5",
    };
    // Entities html.unescape also accepts without ';' (HTML5 legacy names), longest first.
    private static final String[] LEGACY = {"nbsp", "quot", "copy", "amp", "reg", "lt", "gt"};
    private static final Map<Integer, String> CP1252 = new HashMap<Integer, String>();
    private static final String CP1252_TABLE =
        "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f"
        + "\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";
    private static final Map<Integer, String> LIGATURES = new HashMap<Integer, String>();
    private static final Pattern ENTITY = Pattern.compile("&(#[0-9]{1,8};|#[xX][0-9a-fA-F]{1,8};|[A-Za-z][A-Za-z0-9]{1,23};?)");

    static {
        for (int i = 0; i < ENTITY_TABLE.length; i += 2) ENTITIES.put(ENTITY_TABLE[i], ENTITY_TABLE[i + 1]);
        for (int i = 0; i < 32; i++) {
            char c = CP1252_TABLE.charAt(i);
            if (c != 0x80 + i) CP1252.put(0x80 + i, String.valueOf(c));   // undefined bytes stay as they are
        }
        String[] lig = {"\u0132", "IJ", "\u0133", "ij", "\u0149", "\u02bcn", "\u01f1", "DZ", "\u01f2", "Dz",
            "\u01f3", "dz", "\u01c4", "D\u017d", "\u01c5", "D\u017e", "\u01c6", "d\u017e", "\u01c7", "LJ",
            "\u01c8", "Lj", "\u01c9", "lj", "\u01ca", "NJ", "\u01cb", "Nj", "\u01cc", "nj", "\ufb00", "ff",
            "\ufb01", "fi", "\ufb02", "fl", "\ufb03", "ffi", "\ufb04", "ffl", "\ufb05", "\u017ft", "\ufb06", "st"};
        for (int i = 0; i < lig.length; i += 2) LIGATURES.put((int) lig[i].charAt(0), lig[i + 1]);
    }

    /** The full cleaning open_clip applies before BPE. */
    public static String cleanLower(String text) {
        String fixed = fixText(text);
        String unescaped = unescapeHtml(unescapeHtml(fixed));
        return collapseWhitespace(unescaped).toLowerCase(Locale.ROOT);
    }

    /** The ftfy subset, repeated until the text stops changing (as ftfy does). */
    public static String fixText(String text) {
        boolean entities = text.indexOf('<') < 0;
        for (int round = 0; round < 16; round++) {
            String before = text;
            if (entities) text = unescapeHtml(text);
            text = fixCharacters(text);
            text = Normalizer.normalize(text, Normalizer.Form.NFC);
            if (text.equals(before)) break;
        }
        return text;
    }

    private static String fixCharacters(String text) {
        StringBuilder b = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (cp == '\r') {                                     // fix_line_breaks
                if (i < text.length() && text.charAt(i) == '\n') i++;
                b.append('\n');
            } else if (cp == 0x2028 || cp == 0x2029 || cp == 0x85) {
                b.append('\n');
            } else if (cp >= 0x80 && cp < 0xa0 && CP1252.containsKey(cp)) {   // fix_c1_controls
                b.append(uncurl(CP1252.get(cp)));
            } else if (LIGATURES.containsKey(cp)) {
                b.append(LIGATURES.get(cp));
            } else if (cp == 0x3000) {
                b.append(' ');
            } else if (cp >= 0xff01 && cp < 0xfff0) {             // fix_character_width
                b.append(Normalizer.normalize(new String(Character.toChars(cp)), Normalizer.Form.NFKC));
            } else if (cp == 0x2bc || (cp >= 0x2018 && cp <= 0x201b)) {   // uncurl_quotes
                b.append('\'');
            } else if (cp >= 0x201c && cp <= 0x201f) {
                b.append('"');
            } else if (!isControl(cp)) {
                b.appendCodePoint(cp);
            }
        }
        return b.toString();
    }

    private static String uncurl(String s) {
        char c = s.charAt(0);
        if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b)) return "'";
        if (c >= 0x201c && c <= 0x201f) return "\"";
        return s;
    }

    static boolean isControl(int cp) {   // ftfy's CONTROL_CHARS
        return (cp <= 0x08) || cp == 0x0b || (cp >= 0x0e && cp <= 0x1f) || cp == 0x7f
            || (cp >= 0x206a && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffc);
    }

    /** Python's html.unescape for numeric references and the entities in the table. */
    public static String unescapeHtml(String text) {
        if (text.indexOf('&') < 0) return text;
        Matcher m = ENTITY.matcher(text);
        StringBuffer out = new StringBuffer();
        while (m.find()) {
            String body = m.group(1);
            String replacement = null;
            int consumed = m.group().length();
            if (body.charAt(0) == '#') {
                boolean hex = body.charAt(1) == 'x' || body.charAt(1) == 'X';
                long n = Long.parseLong(body.substring(hex ? 2 : 1, body.length() - 1), hex ? 16 : 10);
                replacement = numericReference(n);
            } else if (body.endsWith(";") && ENTITIES.containsKey(body.substring(0, body.length() - 1))) {
                replacement = ENTITIES.get(body.substring(0, body.length() - 1));
            } else {
                for (String legacy : LEGACY) {
                    if (body.startsWith(legacy)) {
                        replacement = ENTITIES.get(legacy);
                        consumed = 1 + legacy.length();
                        break;
                    }
                }
            }
            if (replacement == null) {
                m.appendReplacement(out, Matcher.quoteReplacement(m.group()));
            } else {
                m.appendReplacement(out, Matcher.quoteReplacement(replacement + m.group().substring(consumed)));
            }
        }
        m.appendTail(out);
        return out.toString();
    }

    private static String numericReference(long n) {
        if (n >= 0x80 && n <= 0x9f && CP1252.containsKey((int) n)) return CP1252.get((int) n);
        if (n == 0 || (n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return "\ufffd";
        return new String(Character.toChars((int) n));
    }

    /** Python's " ".join(text.split()).strip(): str.isspace() characters separate words. */
    public static String collapseWhitespace(String text) {
        StringBuilder b = new StringBuilder(text.length());
        boolean pending = false;
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (isPythonSpace(cp)) {
                pending = b.length() > 0;
            } else {
                if (pending) b.append(' ');
                pending = false;
                b.appendCodePoint(cp);
            }
        }
        return b.toString();
    }

    /** The text without the Python whitespace (isPythonSpace) at its start and / or end. */
    static String stripPythonSpace(String text, boolean leading, boolean trailing) {
        int start = 0, end = text.length();
        while (leading && start < end && isPythonSpace(text.codePointAt(start))) start += Character.charCount(text.codePointAt(start));
        while (trailing && end > start && isPythonSpace(text.codePointBefore(end))) end -= Character.charCount(text.codePointBefore(end));
        return text.substring(start, end);
    }

    static boolean isPythonSpace(int cp) {
        return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0
            || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029
            || cp == 0x202f || cp == 0x205f || cp == 0x3000;
    }
}
