package ai.mcad.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** The Java WordPiece tokenizer against the Python one's vectors (-Dmcad.golden.wordpiece picks the folder). */
class WordPieceGoldenTest {
    static final File GOLDEN = new File(System.getProperty("mcad.golden.wordpiece", "src/test/resources/golden_wordpiece"));

    @SuppressWarnings("unchecked")
    @TestFactory
    Stream<DynamicTest> wordPieceIdsAndMasksMatchPython() throws IOException {
        Map<String, Object> golden = Json.object(GoldenTest.read(new File(GOLDEN, "tokens.json")));
        final TextTokenizer tok = TextTokenizer.fromDirectory(new File(GOLDEN, "tokenizer"));
        assertTrue(tok instanceof WordPieceTokenizer, "tokenizer_config.json says wordpiece");
        final WordPieceTokenizer wp = (WordPieceTokenizer) tok;
        final int contextLength = ((Number) golden.get("context_length")).intValue();
        List<DynamicTest> tests = new ArrayList<DynamicTest>();
        int n = 0;
        for (Object o : (List<Object>) golden.get("cases")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String text = (String) c.get("text");
            String label = (n++) + ": " + (text.length() > 30 ? text.substring(0, 30) + "..." : text);
            tests.add(DynamicTest.dynamicTest("wordpiece " + label.replaceAll("\\p{Cntrl}", "?"), () -> {
                assertEquals(contextLength, tok.contextLength());
                assertEquals(c.get("normalized"), wp.normalize(text), "normalized text");
                int[] ids = tok.tokenize(text);
                assertArrayEquals(GoldenTest.ints(c.get("ids")), ids, "token ids");
                assertArrayEquals(GoldenTest.ints(c.get("mask")), TextTokenizer.attentionMask(ids), "attention mask");
            }));
        }
        return tests.stream();
    }
}
