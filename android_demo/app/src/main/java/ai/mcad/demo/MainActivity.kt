package ai.mcad.demo

import ai.mcad.core.ClipTokenizer
import ai.mcad.core.TextTokenizer
import ai.mcad.core.WordPieceTokenizer
import ai.mcad.core.GalleryIndex
import ai.mcad.core.Json
import android.graphics.BitmapFactory
import android.os.Bundle
import android.view.ViewGroup
import android.view.inputmethod.EditorInfo
import android.widget.EditText
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.recyclerview.widget.GridLayoutManager
import androidx.recyclerview.widget.RecyclerView
import java.io.File
import kotlin.concurrent.thread

/**
 * Type a query, see the top-k gallery thumbnails with scores, the per-query latency split
 * (tokenize / encode / search) and the process memory (VmRSS / VmHWM from the kernel, as
 * `mcad-export bench` reads them). Everything comes from assets/mcad/ written by `mcad-export bundle`.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var tokenizer: TextTokenizer
    private lateinit var index: GalleryIndex
    private lateinit var encoder: TextEncoder
    private lateinit var bundleDir: File
    private var ready = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val stats = findViewById<TextView>(R.id.stats)
        val results = findViewById<RecyclerView>(R.id.results).apply { layoutManager = GridLayoutManager(context, 3) }
        stats.text = "loading bundle..."
        thread {
            bundleDir = AssetStore.unpack(this)   // files on disk so the index can be memory-mapped
            val manifest = Json.`object`(File(bundleDir, "bundle.json").readText())
            @Suppress("UNCHECKED_CAST")
            val text = (manifest["encoders"] as Map<String, Any>)["text"] as Map<String, Any>
            @Suppress("UNCHECKED_CAST")
            val inputNames = (text["inputs"] as List<Map<String, Any>>).map { it["name"] as String }
            @Suppress("UNCHECKED_CAST")
            val textSpec = manifest["text"] as Map<String, Any>
            // bundle.json says which tokenizer the student was trained with: CLIP BPE or BERT WordPiece.
            val tokenizerDir = File(bundleDir, "tokenizer")
            tokenizer = when (val kind = textSpec["tokenizer"] ?: "clip_bpe") {
                "wordpiece" -> WordPieceTokenizer.fromDirectory(tokenizerDir)
                "clip_bpe" -> ClipTokenizer.fromDirectory(tokenizerDir)
                else -> error("bundle.json names tokenizer '$kind'; this app knows clip_bpe and wordpiece")
            }
            index = GalleryIndex.open(File(bundleDir, "index"))
            val openModel = { file: String ->
                TextEncoder.open(File(bundleDir, file), text["runtime"] as String, text["accelerator"] as String,
                    inputNames, text["dynamic_length"] == true)
            }
            @Suppress("UNCHECKED_CAST")
            val buckets = (text["length_buckets"] as? List<Map<String, Any>>).orEmpty()
            encoder = if (buckets.isEmpty()) openModel(text["file"] as String) else BucketedTextEncoder(
                buckets.map { (it["tokens"] as Number).toInt() }.toIntArray(),
                buckets.map { openModel(it["file"] as String) }, openModel(text["file"] as String))
            ready = true
            runOnUiThread {
                stats.text = "${manifest["student"]} · ${text["runtime"]} on ${text["accelerator"]} · " +
                    "${index.count} images · ${Memory.line()}"
            }
        }
        findViewById<EditText>(R.id.query).setOnEditorActionListener { view, action, _ ->
            if (action == EditorInfo.IME_ACTION_SEARCH && ready) search(view.text.toString(), stats, results)
            true
        }
    }

    private fun search(query: String, stats: TextView, results: RecyclerView) = thread {
        val t0 = System.nanoTime()
        val ids = tokenizer.tokenize(query)
        val t1 = System.nanoTime()
        val embedding = encoder.encode(ids)
        val t2 = System.nanoTime()
        val hits = index.search(embedding, 12)
        val t3 = System.nanoTime()
        fun ms(a: Long, b: Long) = "%.2f".format((b - a) / 1e6)
        runOnUiThread {
            stats.text = "tokenize ${ms(t0, t1)} ms · encode ${ms(t1, t2)} ms · search ${ms(t2, t3)} ms · " +
                "total ${ms(t0, t3)} ms\n${Memory.line()}"
            results.adapter = HitAdapter(hits.toList(), bundleDir)
        }
    }

    override fun onDestroy() {
        if (ready) encoder.close()
        super.onDestroy()
    }
}

private class HitAdapter(private val hits: List<GalleryIndex.Hit>, private val dir: File) :
    RecyclerView.Adapter<HitAdapter.Holder>() {
    class Holder(val box: LinearLayout, val image: ImageView, val label: TextView) : RecyclerView.ViewHolder(box)

    override fun onCreateViewHolder(parent: ViewGroup, viewType: Int): Holder {
        val image = ImageView(parent.context).apply { adjustViewBounds = true }
        val label = TextView(parent.context).apply { textSize = 11f }
        val box = LinearLayout(parent.context).apply {
            orientation = LinearLayout.VERTICAL
            addView(image)
            addView(label)
        }
        return Holder(box, image, label)
    }

    override fun onBindViewHolder(holder: Holder, position: Int) {
        val hit = hits[position]
        val thumb = File(dir, "thumbs/%06d.jpg".format(hit.row))
        holder.image.setImageBitmap(if (thumb.isFile) BitmapFactory.decodeFile(thumb.path) else null)
        holder.label.text = "%.3f  %s".format(hit.score, hit.path.substringAfterLast('/'))
    }

    override fun getItemCount() = hits.size
}
