package ai.mcad.demo

import android.content.Context
import ai.mcad.core.Json
import java.io.File

/** Copies assets/mcad/ to app storage once per bundle (keyed by bundle.json), so files can be mapped. */
object AssetStore {
    fun unpack(context: Context): File {
        val dest = File(context.filesDir, "mcad")
        val manifest = context.assets.open("mcad/bundle.json").use { it.readBytes() }
        val stamp = File(dest, "bundle.json")
        if (stamp.isFile && stamp.readBytes().contentEquals(manifest)) return dest
        @Suppress("UNCHECKED_CAST")
        val files = Json.`object`(String(manifest)) ["files"] as List<Map<String, Any>>
        for (f in files) {
            val out = File(dest, f["path"] as String)
            out.parentFile?.mkdirs()
            context.assets.open("mcad/${f["path"]}").use { input -> out.outputStream().use { input.copyTo(it) } }
        }
        stamp.writeBytes(manifest)   // last: an interrupted copy is redone on the next start
        return dest
    }
}

object Memory {
    /** VmRSS / VmHWM of this process in MB, read from the kernel like the toolkit's bench does. */
    fun line(): String {
        val status = File("/proc/self/status").readLines().associate {
            it.substringBefore(':') to it.substringAfter(':').trim()
        }
        fun mb(key: String) = (status[key]?.substringBefore(' ')?.toLongOrNull() ?: 0L) / 1024
        return "RSS ${mb("VmRSS")} MB, peak ${mb("VmHWM")} MB"
    }
}
