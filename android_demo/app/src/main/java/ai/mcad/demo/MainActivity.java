package ai.mcad.demo;

import ai.mcad.core.ClipTokenizer;
import ai.mcad.core.GalleryIndex;
import ai.mcad.core.HostTokenTable;
import ai.mcad.core.Json;
import ai.mcad.core.SentencePieceTokenizer;
import ai.mcad.core.TextTokenizer;
import ai.mcad.core.WordPieceTokenizer;
import android.app.Activity;
import android.graphics.BitmapFactory;
import android.os.Bundle;
import android.view.View;
import android.view.ViewGroup;
import android.view.inputmethod.EditorInfo;
import android.widget.BaseAdapter;
import android.widget.EditText;
import android.widget.GridView;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.TextView;
import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Type a query, see the top-12 gallery thumbnails with scores, the per-query latency split (tokenize / encode /
 * search) and the process memory (VmRSS / VmHWM from the kernel, as `mcad-export bench` reads them). Everything
 * comes from assets/mcad/ written by `mcad-export bundle`.
 *
 * Threads: one worker runs the bundle's loading and then every search in order (a query typed while another runs
 * waits for it; no thread per query), so the tokenizer's caches and the encoder are only ever touched by that
 * worker. The loaded state is published to the UI thread through one volatile field. The encoder is closed by
 * a task queued on the same worker, so never under a running search.
 */
public final class MainActivity extends Activity {
    private static final int TOP_K = 12;

    /** Everything a search needs, built once by the worker and then only read. */
    private static final class Loaded {
        final TextTokenizer tokenizer;
        final GalleryIndex index;
        final TextEncoder encoder;
        final File dir;
        final String title;
        final Map<String, Object> bundle;
        final String runtime;
        final String accelerator;

        Loaded(TextTokenizer tokenizer, GalleryIndex index, TextEncoder encoder, File dir, String title,
               Map<String, Object> bundle, String runtime, String accelerator) {
            this.tokenizer = tokenizer;
            this.index = index;
            this.encoder = encoder;
            this.dir = dir;
            this.title = title;
            this.bundle = bundle;
            this.runtime = runtime;
            this.accelerator = accelerator;
        }
    }

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private volatile Loaded loaded;
    private TextView stats;
    private HitAdapter adapter;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        stats = (TextView) findViewById(R.id.stats);
        GridView results = (GridView) findViewById(R.id.results);
        adapter = new HitAdapter();
        results.setAdapter(adapter);
        stats.setText("loading bundle...");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    final Loaded state = load();
                    loaded = state;
                    show(state.title + " · " + Memory.line(), null);
                    if (getIntent().getBooleanExtra("bench", false)) {
                        show("benchmarking the bundle's queries...", null);
                        File written = DeviceBench.run(state.bundle, state.tokenizer, state.encoder, state.index,
                            state.runtime, state.accelerator, getExternalFilesDir(null));
                        show("benchmark written to " + written + " · " + Memory.line(), null);
                    }
                } catch (Exception e) {
                    show("cannot load the bundle: " + e.getMessage(), null);
                }
            }
        });
        final EditText query = (EditText) findViewById(R.id.query);
        query.setOnEditorActionListener(new TextView.OnEditorActionListener() {
            @Override
            public boolean onEditorAction(TextView view, int action, android.view.KeyEvent event) {
                if (action == EditorInfo.IME_ACTION_SEARCH) search(view.getText().toString());
                return true;
            }
        });
    }

    private Loaded load() throws Exception {
        File dir = AssetStore.unpack(this); // files on disk so the index can be memory-mapped
        Map<String, Object> manifest = Json.object(new String(
            AssetStore.readAll(new java.io.FileInputStream(new File(dir, "bundle.json"))), "UTF-8"));
        @SuppressWarnings("unchecked")
        final Map<String, Object> text = (Map<String, Object>) ((Map<String, Object>) manifest.get("encoders")).get("text");
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> inputs = (List<Map<String, Object>>) text.get("inputs");
        final List<String> inputNames = new ArrayList<String>();
        for (Map<String, Object> input : inputs) inputNames.add((String) input.get("name"));
        @SuppressWarnings("unchecked")
        Map<String, Object> textSpec = (Map<String, Object>) manifest.get("text");
        // bundle.json says which tokenizer the student was trained with: CLIP BPE, BERT WordPiece or SentencePiece.
        File tokenizerDir = new File(dir, "tokenizer");
        Object kind = textSpec.get("tokenizer") == null ? "clip_bpe" : textSpec.get("tokenizer");
        TextTokenizer tokenizer;
        if ("wordpiece".equals(kind)) tokenizer = WordPieceTokenizer.fromDirectory(tokenizerDir);
        else if ("clip_bpe".equals(kind)) tokenizer = ClipTokenizer.fromDirectory(tokenizerDir);
        else if ("sentencepiece".equals(kind)) tokenizer = SentencePieceTokenizer.fromDirectory(tokenizerDir);
        else throw new IllegalStateException(
            "bundle.json names tokenizer '" + kind + "'; this app knows clip_bpe, wordpiece and sentencepiece");
        GalleryIndex index = GalleryIndex.open(new File(dir, "index"));
        String runtime = (String) text.get("runtime");
        String accelerator = (String) text.get("accelerator");
        boolean dynamic = Boolean.TRUE.equals(text.get("dynamic_length"));
        // A graph compiled for the NPU starts at the embeddings: its token table is memory-mapped and read here.
        @SuppressWarnings("unchecked")
        Map<String, Object> host = (Map<String, Object>) text.get("host_gather");
        HostTokenTable table = host == null ? null : HostTokenTable.open(
            new File(dir, (String) host.get("rows_file")), new File(dir, (String) host.get("scales_file")));
        TextEncoder full = TextEncoder.open(new File(dir, (String) text.get("file")), runtime, accelerator, inputNames,
            dynamic, table);
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> buckets = (List<Map<String, Object>>) text.get("length_buckets");
        TextEncoder encoder = full;
        if (buckets != null && !buckets.isEmpty()) {
            int[] sizes = new int[buckets.size()];
            List<TextEncoder> graphs = new ArrayList<TextEncoder>();
            for (int i = 0; i < sizes.length; i++) {
                sizes[i] = ((Number) buckets.get(i).get("tokens")).intValue();
                graphs.add(TextEncoder.open(new File(dir, (String) buckets.get(i).get("file")), runtime, accelerator,
                    inputNames, false, table));
            }
            encoder = new BucketedTextEncoder(sizes, graphs, full);
        }
        String title = manifest.get("student") + " · " + runtime + " on " + accelerator + " · " + index.count + " images";
        return new Loaded(tokenizer, index, encoder, dir, title, manifest, runtime, accelerator);
    }

    private void search(final String query) {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                Loaded state = loaded;
                if (state == null) return; // still loading, or loading failed (its message is shown)
                try {
                    long t0 = System.nanoTime();
                    int[] ids = state.tokenizer.tokenize(query);
                    long t1 = System.nanoTime();
                    float[] embedding = state.encoder.encode(ids);
                    long t2 = System.nanoTime();
                    GalleryIndex.Hit[] hits = state.index.search(embedding, TOP_K);
                    long t3 = System.nanoTime();
                    show(String.format(Locale.ROOT, "tokenize %.2f ms · encode %.2f ms · search %.2f ms · total %.2f ms%n%s",
                        ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t0, t3), Memory.line()), Arrays.asList(hits));
                } catch (Exception e) {
                    show("search failed: " + e.getMessage(), null);
                }
            }
        });
    }

    private static double ms(long a, long b) {
        return (b - a) / 1e6;
    }

    private void show(final String line, final List<GalleryIndex.Hit> hits) {
        final Loaded state = loaded;
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                stats.setText(line);
                if (hits != null && state != null) adapter.set(hits, state.dir);
            }
        });
    }

    @Override
    protected void onDestroy() {
        // Queued behind any running search: the encoder is never closed under one.
        worker.execute(new Runnable() {
            @Override
            public void run() {
                Loaded state = loaded;
                if (state != null) state.encoder.close();
            }
        });
        worker.shutdown();
        super.onDestroy();
    }

    /** The top-k thumbnails with their scores and file names; touched only on the UI thread. */
    private static final class HitAdapter extends BaseAdapter {
        private List<GalleryIndex.Hit> hits = Collections.emptyList();
        private File dir;

        void set(List<GalleryIndex.Hit> hits, File dir) {
            this.hits = hits;
            this.dir = dir;
            notifyDataSetChanged();
        }

        @Override
        public int getCount() {
            return hits.size();
        }

        @Override
        public Object getItem(int position) {
            return hits.get(position);
        }

        @Override
        public long getItemId(int position) {
            return hits.get(position).row;
        }

        @Override
        public View getView(int position, View convert, ViewGroup parent) {
            LinearLayout box = (LinearLayout) convert;
            if (box == null) {
                box = new LinearLayout(parent.getContext());
                box.setOrientation(LinearLayout.VERTICAL);
                ImageView image = new ImageView(parent.getContext());
                image.setAdjustViewBounds(true);
                TextView label = new TextView(parent.getContext());
                label.setTextSize(11f);
                box.addView(image);
                box.addView(label);
            }
            GalleryIndex.Hit hit = hits.get(position);
            File thumb = new File(dir, String.format(Locale.ROOT, "thumbs/%06d.jpg", hit.row));
            ((ImageView) box.getChildAt(0)).setImageBitmap(thumb.isFile() ? BitmapFactory.decodeFile(thumb.getPath()) : null);
            String name = hit.path.substring(hit.path.lastIndexOf('/') + 1);
            ((TextView) box.getChildAt(1)).setText(String.format(Locale.ROOT, "%.3f  %s", hit.score, name));
            return box;
        }
    }
}
