"""The artifact contract: names every stage and the Android app agree on.

Documented in ARCHITECTURE.md ("Artifact contract"). Change a name here and there, nowhere else.
"""
from __future__ import annotations

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mcad-export/1"

IMAGE_ENCODER_ONNX = "image_encoder.onnx"
TEXT_ENCODER_ONNX = "text_encoder.onnx"

IMAGE_INPUT = "pixel_values"    # float32 [batch, 3, S, S], preprocessed as manifest["image"] says
IMAGE_OUTPUT = "image_embeds"   # float32 [batch, D], L2-normalised
TEXT_INPUT = "input_ids"        # int32 [batch, L], L = manifest["text"]["context_length"]
TEXT_OUTPUT = "text_embeds"     # float32 [batch, D], L2-normalised

TOKENIZER_DIR = "tokenizer"
TOKENIZER_VOCAB = "vocab.json"          # token string -> id
TOKENIZER_MERGES = "merges.txt"         # one BPE merge per line, rank = line order
TOKENIZER_CONFIG = "tokenizer_config.json"

REPORTS_DIR = "reports"
