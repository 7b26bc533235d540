"""The artifact contract: names every stage and the Android app agree on.

Documented in docs/contract.md. Change a name here and there, nowhere else.
"""

from __future__ import annotations

from enum import Enum

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mcad-export/1"

IMAGE_ENCODER_ONNX = "image_encoder.onnx"
TEXT_ENCODER_ONNX = "text_encoder.onnx"

# The short-query text encoder (export/short_query.py): dynamic token axis, weights as ONNX external data.
SHORT_QUERY_ONNX = "text_encoder.dyn.onnx"
SHORT_QUERY_DATA = "text_encoder.dyn.onnx.data"

# Length buckets of the text encoder for static-shape NPU targets (export/short_query.py): the same
# re-stated forward at a fixed [1, tokens], fp32, weights inline; listed in manifest["text"]["length_buckets"]
# (not in "artifacts": the host query path uses the short-query encoder) and compiled per target. A query
# runs on the smallest bucket that holds it up to EOT, else on the full-context encoder.
LENGTH_BUCKETS = (16, 32)
LENGTH_BUCKET_DIR = "buckets"


def length_bucket_onnx(tokens: int) -> str:
    return f"{LENGTH_BUCKET_DIR}/text_encoder.len{tokens}.onnx"


# The stem every derived file of an fp32 ONNX encoder is named from (quantize writes <stem>.<precision>.onnx).
# Written paths come from this table, never from strings read back from a manifest.
ONNX_STEMS = {
    IMAGE_ENCODER_ONNX: "image_encoder",
    TEXT_ENCODER_ONNX: "text_encoder",
    SHORT_QUERY_ONNX: "text_encoder.dyn",
}

IMAGE_INPUT = "pixel_values"  # float32 [batch, 3, S, S], preprocessed as manifest["image"] says
IMAGE_OUTPUT = "image_embeds"  # float32 [batch, D], L2-normalised
TEXT_INPUT = "input_ids"  # int32 [batch, L], L = manifest["text"]["context_length"]
# Masked (BERT-family) text towers take a second input: int32 [batch, L], 1 up to and including [SEP], 0 on
# [PAD] (runtime.wordpiece.attention_mask derives it from the ids). manifest["text"]["inputs"] lists the names.
TEXT_MASK_INPUT = "attention_mask"


def text_inputs(masked: bool) -> tuple[str, ...]:
    return (TEXT_INPUT, TEXT_MASK_INPUT) if masked else (TEXT_INPUT,)


# A text graph compiled for an NPU starts at the embeddings (compile/host_gather.py): the token table is looked up on
# the host and fed as float32 [1, L, width]; input_ids stays an input only where the graph still reads it (a causal
# tower pools at its EOT). The table ships beside the compiled model as int8 rows and float32 per-row scales (.npy),
# memory-mapped by runtime/token_table.py and ai.mcad.core.HostTokenTable.
TEXT_EMBEDS_INPUT = "token_embeds"
HOST_TOKEN_ROWS = "token_table.int8.npy"
HOST_TOKEN_SCALES = "token_table.scales.npy"

TEXT_OUTPUT = "text_embeds"
# The additive attention mask inside every exported text graph (causal towers' mask, BERT-family padding): exp(-1e4)
# underflows to exactly 0 in fp32 and fits fp16 (NPUs), unlike -inf or finfo.min, which break int8 calibrators.
# export/rewrites.py, students/bert_text.py and export/text_forward.py all use this one value.
FINITE_MASK_VALUE = -1e4  # float32 [batch, D], L2-normalised

# TFLite twins live in tflite/{image,text}_encoder.tflite: same input/output names (signature
# "serving_default"), static batch 1.
TFLITE_DIR = "tflite"
TEXT_ENCODER_TFLITE = f"{TFLITE_DIR}/text_encoder.tflite"
# A bidirectional text tower's one-query forward is fed every position anyway, so its TFLite twin is static
# [1, context] (litert-torch cannot convert a dynamic token axis): the CPU (XNNPACK) path of such students.
SHORT_QUERY_TFLITE = f"{TFLITE_DIR}/text_encoder.dyn.tflite"
# As ONNX_STEMS, for the fp32 TFLite files quantize derives variants from (tflite/<stem>.<precision>.tflite).
TFLITE_STEMS = {
    f"{TFLITE_DIR}/image_encoder.tflite": "image_encoder",
    TEXT_ENCODER_TFLITE: "text_encoder",
    SHORT_QUERY_TFLITE: "text_encoder.dyn",
}

TOKENIZER_DIR = "tokenizer"
TOKENIZER_VOCAB = "vocab.json"  # token string -> id
TOKENIZER_MERGES = "merges.txt"  # one BPE merge per line, rank = line order
# "type": clip_bpe (vocab.json + merges.txt), wordpiece (vocab.txt) or sentencepiece (spiece.model)
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_WORDPIECE_VOCAB = "vocab.txt"  # WordPiece: one token per line, id = line number
# WordPiece: [lo, hi] code point ranges tokenizers drops / reads as whitespace / splits as punctuation / strips
# as accents (runtime/wordpiece_tables.json, measured), so every tokenizer reads one Unicode table.
TOKENIZER_UNICODE_CLASSES = "unicode_classes.json"
# SentencePiece (SigLIP, SigLIP 2 / Gemma): the student's own .model file, byte for byte (runtime/spm_model.py reads
# it without protobuf), and tokenizer_config.json naming the family's wrapping (runtime/spm_tokenizer.py).
TOKENIZER_SPM_MODEL = "spiece.model"

REFERENCE_DIR = "reference"
# PyTorch fp32 embeddings of the evaluation set (manifest["evaluation"]): npz with
# image_embeds [N, D] and text_embeds [N, D]; row i of each belongs together.
REFERENCE_EMBEDDINGS = "reference/eval_embeddings.npz"

REPORTS_DIR = "reports"
# `run`'s third-party tool output, one file per stage (logs/<stage>.log), and its resume record
# (logs/pipeline.json: per finished stage the digest of its inputs and the files it wrote; resume.py).
LOGS_DIR = "logs"
FIDELITY_REPORT = "reports/fidelity.json"  # list of per-artifact gate records

# Gallery index (runtime/index.py): index/index.json (format, kind flat|sq8|ivfpq, count, dim,
# root of the image paths, params, the artifact that embedded the images, sha256 + size of every other
# file under "digests"), index/paths.txt (one image path per row, relative to root; '%', control
# characters and non-UTF-8 bytes written as %XX), index/embeddings.f32.npy (float32 [N, D], L2-normalised,
# row i = line i of paths.txt), index/codes.faiss (sq8/ivfpq only), index/ivfpq.npz (ivfpq only: coarse
# centroids, PQ codebooks, inverted lists; what the query path searches without importing faiss).
INDEX_DIR = "index"
# `index --engine ray`: embedded shards of one job (runtime/gallery_ray.py), kept so a rerun computes only the
# missing ones: index_shards/<job key>/shard-<i>.npz (rows float32 [n, D], names, skipped as JSON).
INDEX_SHARDS_DIR = "index_shards"
INDEX_META = "index.json"
INDEX_PATHS = "paths.txt"
INDEX_EMBEDDINGS = "embeddings.f32.npy"
INDEX_CODES = "codes.faiss"
INDEX_IVFPQ = "ivfpq.npz"  # ivfpq only: the search arrays, so queries run without faiss (runtime/ivfpq.py)
INDEX_FORMAT = "mcad-index/2"  # 2: paths %XX-escaped (index.encode_path), digests of every file
GALLERY_DIR = "gallery"  # the embedded student's held-out scenes as PNGs, when no --images is given

BENCH_REPORT = "reports/bench.json"
# The app's own benchmark on a phone (android_demo DeviceBench, `--ez bench true`), kept by `report --device-bench`.
DEVICE_BENCH = "reports/device-bench.json"
REPORT_HTML = "reports/report.html"
REPORT_MD = "reports/report.md"
REPORT_JSON = "reports/report.json"

# compile stage: compiled/<backend>-<SoC>/ per target (e.g. compiled/qnn-SM8650/text_encoder.qnn_ctx.onnx);
# each file is a manifest artifact with `target` and `soc`.
COMPILED_DIR = "compiled"

# `mcad-export apk`: the demo app built around the bundle (mcad_export/apk/), and its record (sha256, size, SDK
# levels, ABIs, signature, toolchain, size breakdown).
APK_DIR = "apk"
APK_FILE = f"{APK_DIR}/mcad-demo-debug.apk"
APK_RECORD = f"{APK_DIR}/apk.json"

# Every stage stages its files in <out>/.mcad-staging/<pid>-*/ and holds <out>/.mcad-lock while it writes
# (atomic.py); both live inside the export so nothing a stage does lands beside it.
STAGING_DIR = ".mcad-staging"
LOCK_FILE = ".mcad-lock"

# What mcad-export owns in an export's root: confined.audit refuses a link (or a hard-linked file) at any of these
# names, or anywhere below an owned folder, before a stage or a search starts. tests/test_confined.py checks that
# every path this module names is covered.
OWNED_FOLDERS = frozenset(
    {
        TOKENIZER_DIR,
        REFERENCE_DIR,
        REPORTS_DIR,
        LOGS_DIR,
        INDEX_DIR,
        INDEX_SHARDS_DIR,
        GALLERY_DIR,
        TFLITE_DIR,
        LENGTH_BUCKET_DIR,
        COMPILED_DIR,
        APK_DIR,
        STAGING_DIR,
    }
)
OWNED_FILES = frozenset(
    {MANIFEST, LOCK_FILE, IMAGE_ENCODER_ONNX, TEXT_ENCODER_ONNX, SHORT_QUERY_ONNX, SHORT_QUERY_DATA}
)
# Quantized variants are named <stem>.<precision>.onnx[.data] from ONNX_STEMS.
OWNED_PREFIXES = tuple(sorted({f"{stem.split('.')[0]}." for stem in ONNX_STEMS.values()}))


# The values a manifest record may carry (JSON on disk is the string). read_manifest refuses others with one line,
# so a record no stage knows how to treat can never be skipped silently.
class Encoder(str, Enum):
    IMAGE = "image"
    TEXT = "text"


class Precision(str, Enum):
    FP32 = "fp32"
    W8A8 = "w8a8"
    W8A16 = "w8a16"
    W16A16 = "w16a16"  # compile qnn only: int16 Linear weights where int8 misses the gate (compile/htp_recipe.py)
    DYNAMIC = "dynamic"
    DYNTOK = "dyntok"
    W8 = "w8"
    W4 = "w4"
    FP16 = "fp16"


class Format(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    ONNX_QNN_CONTEXT = "onnx-qnn-context"  # compile qnn: an EPContext node embedding the HTP context binary
    TFLITE_NPU = "tflite-npu"  # compile litert: LiteRT AOT-compiled for a vendor NPU
    AIHUB_TFLITE = "aihub-tflite"  # compile aihub: what AI Hub compiled to (--aihub-runtime)
    AIHUB_QNN_CONTEXT_BINARY = "aihub-qnn_context_binary"
    AIHUB_ONNX = "aihub-onnx"


class Runtime(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"
    QNN_HTP = "qnn-htp"  # verified on the x86 HTP simulator


# Device-only runtimes are named per toolchain: aihub-<runtime>, litert-npu-<vendor>.
DEVICE_RUNTIME_PREFIXES = ("aihub-", "litert-npu-")
