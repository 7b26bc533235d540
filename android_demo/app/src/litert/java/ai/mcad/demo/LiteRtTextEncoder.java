package ai.mcad.demo;

import ai.mcad.core.HostTokenTable;
import ai.mcad.core.TextTokenizer;
import com.google.ai.edge.litert.Accelerator;
import com.google.ai.edge.litert.CompiledModel;
import com.google.ai.edge.litert.TensorBuffer;
import java.io.File;
import java.util.List;

/**
 * LiteRT's CompiledModel on the CPU (XNNPACK) or the NPU (NeuroPilot on Dimensity, QNN on Snapdragon). Compiled
 * only by the Gradle build, where LiteRT is a dependency (build.gradle.kts adds src/litert/java); TextEncoder.open
 * finds it by name, so the offline build, which has no LiteRT library, has no such class rather than a stub.
 */
public final class LiteRtTextEncoder implements TextEncoder {
    private final CompiledModel compiled;
    private final List<TensorBuffer> inputs;
    private final List<TensorBuffer> outputs;
    private final List<String> inputNames;
    private final HostTokenTable table;

    /** `table`: the host token table of a graph AI Hub compiled to start at the embeddings (else null). */
    public LiteRtTextEncoder(File model, String accelerator, List<String> inputNames, HostTokenTable table)
            throws Exception {
        this.compiled = CompiledModel.create(model.getPath(),
            new CompiledModel.Options("NPU".equals(accelerator) ? Accelerator.NPU : Accelerator.CPU));
        this.inputs = compiled.createInputBuffers();
        this.outputs = compiled.createOutputBuffers();
        this.inputNames = inputNames;
        this.table = table;
    }

    @Override
    public float[] encode(int[] ids) throws Exception {
        for (int i = 0; i < inputNames.size(); i++) {
            String name = inputNames.get(i);
            if ("token_embeds".equals(name)) {
                inputs.get(i).writeFloat(table.gather(ids));  // float32 [1, L, width], looked up on the CPU
            } else {
                inputs.get(i).writeInt("attention_mask".equals(name) ? TextTokenizer.attentionMask(ids) : ids);
            }
        }
        compiled.run(inputs, outputs);
        return outputs.get(0).readFloat();
    }

    @Override
    public void close() {
        compiled.close();
    }
}
