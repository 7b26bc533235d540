package ai.mcad.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The host token table (text graphs compiled to start at the embeddings) against runtime/token_table.py: the folder
 * -Dmcad.golden.hosttable holds the two .npy files compile writes and cases.json, ids with the float32 rows Python
 * gathered for them. Equal to the bit: both compute int8 * float32 scale in float32.
 */
class HostTokenTableGoldenTest {
    static final File GOLDEN = new File(System.getProperty("mcad.golden.hosttable", "src/test/resources/golden_host_table"));

    static HostTokenTable open() throws IOException {
        return HostTokenTable.open(new File(GOLDEN, "token_table.int8.npy"), new File(GOLDEN, "token_table.scales.npy"));
    }

    @SuppressWarnings("unchecked")
    @TestFactory
    Stream<DynamicTest> gatheredRowsMatchPython() throws IOException {
        final HostTokenTable table = open();
        Map<String, Object> golden = Json.object(GoldenTest.read(new File(GOLDEN, "cases.json")));
        assertEquals(((Number) golden.get("vocab")).intValue(), table.vocab);
        assertEquals(((Number) golden.get("width")).intValue(), table.width);
        List<DynamicTest> tests = new ArrayList<DynamicTest>();
        int n = 0;
        for (Object o : (List<Object>) golden.get("cases")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            tests.add(DynamicTest.dynamicTest("host table " + (n++), () -> {
                List<Object> expected = (List<Object>) c.get("rows");
                float[] want = new float[expected.size()];
                for (int i = 0; i < want.length; i++) want[i] = (float) ((Number) expected.get(i)).doubleValue();
                assertArrayEquals(want, table.gather(GoldenTest.ints(c.get("ids"))), 0f, "gathered rows");
            }));
        }
        return tests.stream();
    }

    @Test
    void anIdOutsideTheTableIsRefused() throws IOException {
        HostTokenTable table = open();
        assertThrows(IllegalArgumentException.class, () -> table.gather(new int[] {table.vocab}));
        assertThrows(IllegalArgumentException.class, () -> table.gather(new int[] {-1}));
    }
}
