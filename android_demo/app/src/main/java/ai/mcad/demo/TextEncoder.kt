package ai.mcad.demo

import ai.mcad.core.LengthBuckets
import ai.mcad.core.TextTokenizer
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import java.io.File
import java.nio.IntBuffer

/** One text query -> one L2-normalised embedding, on the runtime bundle.json names for the target. */
interface TextEncoder : AutoCloseable {
    fun encode(ids: IntArray): FloatArray

    companion object {
        /** runtime/accelerator come from bundle.json (mcad-export bundle writes why it chose them). */
        /** `inputNames`: input_ids, plus attention_mask for a BERT-family tower (derived from the ids). */
        fun open(model: File, runtime: String, accelerator: String, inputNames: List<String>,
                 dynamicLength: Boolean = false): TextEncoder =
            when (runtime) {
                "onnxruntime" -> OrtTextEncoder(model, accelerator, inputNames, dynamicLength)
                "litert" -> LiteRtTextEncoder(model, accelerator, inputNames)
                else -> error("bundle.json names runtime '$runtime'; this app knows onnxruntime and litert")
            }
    }
}

/**
 * Static NPU graphs at a few lengths (bundle.json `length_buckets`): each query runs on the shortest
 * bucket holding it up to EOT, fed its ids cut to that length; longer queries run on `full`.
 */
class BucketedTextEncoder(
    private val sizes: IntArray, private val buckets: List<TextEncoder>, private val full: TextEncoder,
) : TextEncoder {
    override fun encode(ids: IntArray): FloatArray {
        val i = LengthBuckets.pick(sizes, TextTokenizer.realLength(ids))
        return if (i < 0) full.encode(ids) else buckets[i].encode(LengthBuckets.fit(ids, sizes[i]))
    }

    override fun close() {
        buckets.forEach { it.close() }
        full.close()
    }
}

private class OrtTextEncoder(
    model: File, accelerator: String, private val inputNames: List<String>, private val dynamicLength: Boolean,
) : TextEncoder {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession = env.createSession(model.path, OrtSession.SessionOptions().apply {
        setIntraOpNumThreads(1)
        if (accelerator == "QNN-HTP") {
            // The context binary inside the ONNX file was compiled for this SoC's HTP; no CPU fallback.
            addQnn(mapOf("backend_path" to "libQnnHtp.so"))
            addConfigEntry("session.disable_cpu_ep_fallback", "1")
        }
    })

    override fun encode(ids: IntArray): FloatArray {
        // The short-query encoder computes only the real tokens (exact for causal and masked students; bundle.json
        // says); a masked tower's full or bucket graph also takes the attention mask, derived from the ids.
        val feed = if (dynamicLength) ids.copyOf(TextTokenizer.realLength(ids)) else ids
        val shape = longArrayOf(1, feed.size.toLong())
        val tensors = inputNames.associateWith { name ->
            val values = if (name == "attention_mask") TextTokenizer.attentionMask(feed) else feed
            OnnxTensor.createTensor(env, IntBuffer.wrap(values), shape)
        }
        try {
            session.run(tensors).use { out ->
                @Suppress("UNCHECKED_CAST")
                return (out[0].value as Array<FloatArray>)[0]
            }
        } finally {
            tensors.values.forEach { it.close() }
        }
    }

    override fun close() = session.close()
}

private class LiteRtTextEncoder(model: File, accelerator: String, private val inputNames: List<String>) : TextEncoder {
    private val compiled = CompiledModel.create(
        model.path, CompiledModel.Options(if (accelerator == "NPU") Accelerator.NPU else Accelerator.CPU))
    private val inputs = compiled.createInputBuffers()
    private val outputs = compiled.createOutputBuffers()

    override fun encode(ids: IntArray): FloatArray {
        inputNames.forEachIndexed { i, name ->
            inputs[i].writeInt(if (name == "attention_mask") TextTokenizer.attentionMask(ids) else ids)
        }
        compiled.run(inputs, outputs)
        return outputs[0].readFloat()
    }

    override fun close() = compiled.close()
}
