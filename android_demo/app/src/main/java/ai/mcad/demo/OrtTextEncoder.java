package ai.mcad.demo;

import ai.mcad.core.HostTokenTable;
import ai.mcad.core.TextTokenizer;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.io.File;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** ONNX Runtime on the CPU, or its QNN execution provider for an HTP context binary (bundle.json `accelerator`). */
final class OrtTextEncoder implements TextEncoder {
    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final OrtSession session;
    private final List<String> inputNames;
    private final boolean dynamicLength;
    private final HostTokenTable table;

    OrtTextEncoder(File model, String accelerator, List<String> inputNames, boolean dynamicLength,
                   HostTokenTable table) throws OrtException {
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        options.setIntraOpNumThreads(1);
        if ("QNN-HTP".equals(accelerator)) {
            // The context binary inside the ONNX file was compiled for this SoC's HTP; no CPU fallback. Needs the
            // QNN build of ONNX Runtime (the Gradle build's dependency); the offline build's CPU build refuses it.
            Map<String, String> qnn = new HashMap<String, String>();
            qnn.put("backend_path", "libQnnHtp.so");
            options.addQnn(qnn);
            options.addConfigEntry("session.disable_cpu_ep_fallback", "1");
        }
        this.session = env.createSession(model.getPath(), options);
        this.inputNames = inputNames;
        this.dynamicLength = dynamicLength;
        this.table = table;
    }

    @Override
    public float[] encode(int[] ids) throws OrtException {
        // The short-query encoder computes only the real tokens (exact for causal and masked students; bundle.json
        // says); a masked tower's full or bucket graph also takes the attention mask, derived from the ids.
        int[] feed = dynamicLength ? Arrays.copyOf(ids, TextTokenizer.realLength(ids)) : ids;
        long[] shape = {1, feed.length};
        Map<String, OnnxTensor> tensors = new HashMap<String, OnnxTensor>();
        try {
            for (String name : inputNames) {
                if ("token_embeds".equals(name)) {
                    // A graph compiled to start at the embeddings: the token table is looked up here, on the CPU.
                    float[] rows = table.gather(feed);
                    tensors.put(name, OnnxTensor.createTensor(env, FloatBuffer.wrap(rows),
                        new long[] {1, feed.length, table.width}));
                    continue;
                }
                int[] values = "attention_mask".equals(name) ? TextTokenizer.attentionMask(feed) : feed;
                tensors.put(name, OnnxTensor.createTensor(env, IntBuffer.wrap(values), shape));
            }
            try (OrtSession.Result out = session.run(tensors)) {
                return ((float[][]) out.get(0).getValue())[0];
            }
        } finally {
            for (OnnxTensor t : tensors.values()) t.close();
        }
    }

    @Override
    public void close() {
        try {
            session.close();
        } catch (OrtException e) {
            // closing a session that failed to free native memory leaves nothing to do here
        }
    }
}
