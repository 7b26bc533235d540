package ai.mcad.demo;

import ai.mcad.core.HostTokenTable;
import java.io.File;
import java.util.List;

/** One text query -> one L2-normalised embedding, on the runtime bundle.json names for the target. */
interface TextEncoder extends AutoCloseable {
    float[] encode(int[] ids) throws Exception;

    @Override
    void close();

    /**
     * runtime/accelerator come from bundle.json (mcad-export bundle writes why it chose them); `inputNames`:
     * input_ids, plus attention_mask for a BERT-family tower (derived from the ids), and token_embeds for a graph
     * compiled to start at the embeddings (`table` looks its rows up on the CPU; else null). ONNX Runtime is in every
     * build. LiteRT is compiled only into the Gradle build (src/litert/java, where its library is a dependency):
     * an offline `mcad-export apk` build has no LiteRT, and says so instead of pretending.
     */
    static TextEncoder open(File model, String runtime, String accelerator, List<String> inputNames,
                            boolean dynamicLength, HostTokenTable table) throws Exception {
        switch (runtime) {
            case "onnxruntime":
                return new OrtTextEncoder(model, accelerator, inputNames, dynamicLength, table);
            case "litert":
                Class<?> litert;
                try {
                    litert = Class.forName("ai.mcad.demo.LiteRtTextEncoder");
                } catch (ClassNotFoundException e) {
                    throw new IllegalStateException("this build has no LiteRT runtime (built offline with ONNX "
                        + "Runtime only): bundle an ONNX text encoder, or build with Gradle");
                }
                return (TextEncoder) litert.getConstructor(File.class, String.class, List.class, HostTokenTable.class)
                    .newInstance(model, accelerator, inputNames, table);
            default:
                throw new IllegalStateException(
                    "bundle.json names runtime '" + runtime + "'; this app knows onnxruntime and litert");
        }
    }
}
