"""A trained CLIP-size benchmark student: the 12 x 512 causal text tower most distilled CLIP students carry.

    .venv/bin/python benchmarks/train_clip_size_student.py            # ~35 min on two CPU cores
    .venv/bin/mcad-export export --student open_clip:$HOME/.cache/mcad-export/clip-size-student/open_clip_config.json \\
        --weights $HOME/.cache/mcad-export/clip-size-student/student.safetensors --no-tflite --out build/perf/clipsize

Why: random-init towers give degenerate embeddings (every caption nearly the same vector), so INT8/INT4
fidelity at this size could only be judged on cosine. This student has ViT-B-32's text tower (12 layers x
512, 8 heads, 77 tokens, 49,408-token CLIP BPE, 512-d embedding) and a small ViT image tower, distilled on
the scene data by the project's own trainer (`mcad_export.training.distill.train`) with the embedded
student as teacher (MCAD's KL term over in-batch similarities; the feature-alignment term needs a common
width, 128 vs 512, so it is off). Deterministic: fixed seeds, data rendered from fixed split seeds.

The weights (~135 MB fp16) are written outside git, by default to ~/.cache/mcad-export/clip-size-student/
(`--out`); the folder is written atomically and reused when its card matches this script's settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mcad_export.atomic import staged_directory  # noqa: E402
from mcad_export.students.checkpoint import apply_state_dict, read_state_dict  # noqa: E402
from mcad_export.students.embedded import ASSET_DIR  # noqa: E402
from mcad_export.students.open_clip_family import build_model  # noqa: E402
from mcad_export.training import distill, recipe  # noqa: E402
from mcad_export.training.retrain import clip_tokenizer, heldout_recall  # noqa: E402

NAME = "mcad-scenes-clip-size-v1"
DEFAULT_OUT = Path.home() / ".cache" / "mcad-export" / "clip-size-student"
CONFIG = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": recipe.IMAGE_SIZE, "layers": 4, "width": 256, "patch_size": 8, "head_width": 64},
    # ViT-B-32's (and MobileCLIP-S1/S2/B's, TinyCLIP-61M's) text tower.
    "text_cfg": {"context_length": recipe.CONTEXT_LENGTH, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}
SETTINGS = {
    "steps": 450,
    "lr": 5e-4,
    "warmup": 50,
    "train_images": recipe.TRAIN_IMAGES,
    "batch": recipe.BATCH,
    "seed": recipe.SEED + 7,
}


def teacher_model():
    model, _, _ = build_model(str(ASSET_DIR / "open_clip_config.json"))
    apply_state_dict(model, read_state_dict(ASSET_DIR / "student.safetensors"), "the embedded student")
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"weights folder (default {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="retrain even when --out holds this configuration")
    args = parser.parse_args()
    card_path = args.out / "card.json"
    if card_path.is_file() and not args.force:
        card = json.loads(card_path.read_text())
        if card.get("settings") == SETTINGS and card.get("config") == CONFIG:
            print(
                f"{args.out} already holds {NAME} (held-out t2i R@1 "
                f"{card['heldout_recall']['student_fp32']['t2i_r1']}); --force retrains"
            )
            return 0
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    started = time.time()
    tokenizer = clip_tokenizer()
    train = distill.load_split(tokenizer, "train", SETTINGS["train_images"], templates=3)
    held = distill.load_split(tokenizer, "heldout", recipe.HELDOUT_IMAGES)
    print(f"data rendered in {time.time() - started:.0f} s", flush=True)
    teacher = teacher_model()
    torch.manual_seed(SETTINGS["seed"])
    student = CLIP(**CONFIG)

    def progress(step, total, loss):
        if step % 25 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.3f} ({time.time() - started:.0f} s)", flush=True)

    losses = distill.train(
        student,
        train,
        SETTINGS["steps"],
        teacher=teacher,
        progress=progress,
        lr=SETTINGS["lr"],
        warmup=SETTINGS["warmup"],
    )
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in student.state_dict().items()}
    student.load_state_dict({k: v.float() for k, v in state.items()})
    card = {
        "name": NAME,
        "config": CONFIG,
        "settings": SETTINGS,
        "params_million": {
            "total": round(sum(p.numel() for p in student.parameters()) / 1e6, 2),
            "text": round(
                sum(p.numel() for n, p in student.named_parameters() if not n.startswith("visual.")) / 1e6, 2
            ),
        },
        "teacher": "the embedded student (mcad_export/assets/default_student)",
        "losses": f"InfoNCE + {recipe.KL_WEIGHT} x KL(teacher||student) over in-batch similarities (both directions)",
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "heldout_recall": {
            "student_fp32": heldout_recall(student, tokenizer, held),
            "teacher_fp32": heldout_recall(teacher, tokenizer, held),
        },
        "trained_on": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "train_seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with staged_directory(args.out) as stage:
        save_file(state, str(stage / "student.safetensors"), metadata={"format": "pt", "source": NAME})
        (stage / "open_clip_config.json").write_text(
            json.dumps(
                {
                    "model_cfg": CONFIG,
                    "preprocess_cfg": {
                        "size": recipe.IMAGE_SIZE,
                        "mean": list(recipe.MEAN),
                        "std": list(recipe.STD),
                        "interpolation": "bicubic",
                        "resize_mode": "shortest",
                    },
                    # held-out recall on the scenes it was trained for (1,000 captions that identify their images)
                    "evaluation": {"samples": "scenes", "count": recipe.HELDOUT_IMAGES},
                },
                indent=2,
            )
            + "\n"
        )
        (stage / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["heldout_recall"], indent=2))
    print(f"wrote {args.out} in {card['train_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
