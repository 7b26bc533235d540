"""Model configs and hyper-parameters of the embedded student and its teacher."""

from __future__ import annotations

IMAGE_SIZE = 64
CONTEXT_LENGTH = 77
EMBED_DIM = 128

# open_clip model config (the same JSON the student ships with): small ViT image tower,
# causal CLIP text transformer over the standard 49,408-token BPE vocabulary.
STUDENT_CONFIG = {
    "embed_dim": EMBED_DIM,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 4},
}

# Teacher: wider and deeper in both towers. Same embedding width so feature alignment needs no projector.
TEACHER_CONFIG = {
    "embed_dim": EMBED_DIM,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 6, "width": 192, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 192, "heads": 6, "layers": 6},
}

# CLIP's normalisation constants: the student is preprocessed exactly like OpenAI CLIP models.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

TRAIN_IMAGES = 40_000
CALIB_IMAGES = 512
HELDOUT_IMAGES = 1_000
BATCH = 128
TEACHER_STEPS = 300
STUDENT_STEPS = 700
LR = 1e-3
WEIGHT_DECAY = 0.1
WARMUP = 40
# MCAD-style objective weights: contrastive + KL(teacher || student) over in-batch
# image-text similarity distributions + cosine feature alignment to the teacher's embeddings.
KL_WEIGHT = 1.0
ALIGN_WEIGHT = 1.0
SEED = 0
