"""`mcad-export train-student`: rebuild the embedded default student from scratch.

Renders the scene data, trains the teacher contrastively, distills the student MCAD-style,
measures held-out recall of both at full 77-token context, and writes the student as fp16
safetensors + open_clip config + card. ~25 min on two CPU cores; faster on a GPU.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import staged_directory
from ..metrics import recall_at
from . import distill, recipe

CHECKPOINT = "student.safetensors"
CONFIG = "open_clip_config.json"
CARD_MD = "card.md"
CARD_JSON = "card.json"


def clip_tokenizer():
    import open_clip

    from ..runtime.tokenizer import Tokenizer

    return Tokenizer.from_clip_bpe_gz(open_clip.tokenizer.default_bpe(), recipe.CONTEXT_LENGTH)


@torch.no_grad()
def heldout_recall(model, tokenizer, held: distill.Split) -> dict:
    """Recall with open_clip's own encode_text at the full context length (what gets exported)."""
    from ..data.scenes import caption_at

    model.eval()
    captions = [caption_at("heldout", i) for i in range(held.pixels.shape[0])]
    ids = torch.from_numpy(tokenizer(captions).astype(np.int64))
    img = torch.cat(
        [
            model.encode_image(distill.normalise(held.pixels[s : s + 250]), normalize=True)
            for s in range(0, len(ids), 250)
        ]
    )
    txt = torch.cat([model.encode_text(ids[s : s + 250], normalize=True) for s in range(0, len(ids), 250)])
    return recall_at(img.numpy(), txt.numpy())


def retrain(
    out_dir: Path,
    progress=None,
    teacher_steps=recipe.TEACHER_STEPS,
    student_steps=recipe.STUDENT_STEPS,
    train_images=recipe.TRAIN_IMAGES,
) -> dict:
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    started = time.time()
    torch.manual_seed(recipe.SEED)
    tokenizer = clip_tokenizer()
    say = progress or (lambda *a: None)
    say("data", 0, 1, 0.0)
    train = distill.load_split(tokenizer, "train", train_images, templates=3)
    held = distill.load_split(tokenizer, "heldout", recipe.HELDOUT_IMAGES)

    teacher = CLIP(**recipe.TEACHER_CONFIG)
    t_losses = distill.train(teacher, train, teacher_steps, progress=lambda s, n, loss: say("teacher", s, n, loss))
    teacher_recall = heldout_recall(teacher, tokenizer, held)

    torch.manual_seed(recipe.SEED + 1)
    student = CLIP(**recipe.STUDENT_CONFIG)
    s_losses = distill.train(
        student, train, student_steps, teacher=teacher, progress=lambda s, n, loss: say("student", s, n, loss)
    )
    # Ship fp16 (halves the file, keeps it under 16 MB); recall is measured on exactly what ships.
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in student.state_dict().items()}
    student.load_state_dict({k: v.float() for k, v in state.items()})
    student_recall = heldout_recall(student, tokenizer, held)

    card = {
        "name": "mcad-scenes-student-v1",
        "architecture": "open_clip custom config (ViT 4x128 patch 8 @ 64 px; text 4x96, 77 ctx, CLIP BPE)",
        "params_million": round(sum(p.numel() for p in student.parameters()) / 1e6, 3),
        "teacher_params_million": round(sum(p.numel() for p in teacher.parameters()) / 1e6, 3),
        "data": {
            "generator": "mcad_export.data.scenes",
            "train_images": train_images,
            "caption_templates": 3,
            "heldout_images": recipe.HELDOUT_IMAGES,
            "calib_images": recipe.CALIB_IMAGES,
            "image_size": recipe.IMAGE_SIZE,
        },
        "losses": {
            "teacher": "symmetric InfoNCE",
            "student": f"InfoNCE + {recipe.KL_WEIGHT} x KL(teacher||student) over in-batch similarities "
            f"(both directions) + {recipe.ALIGN_WEIGHT} x (1 - cos) feature alignment",
        },
        "steps": {"teacher": teacher_steps, "student": student_steps, "batch": recipe.BATCH, "lr": recipe.LR},
        "final_loss": {
            "teacher": round(float(np.mean(t_losses[-20:])), 4),
            "student": round(float(np.mean(s_losses[-20:])), 4),
        },
        "heldout_recall": {"student_fp32": student_recall, "teacher_fp32": teacher_recall},
        "trained_on": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "train_seconds": round(time.time() - started, 1),
    }
    with staged_directory(out_dir) as stage:
        save_file(state, str(stage / CHECKPOINT), metadata={"format": "pt", "source": "mcad-export train-student"})
        (stage / CONFIG).write_text(json.dumps(open_clip_config(), indent=2) + "\n")
        (stage / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
        (stage / CARD_MD).write_text(render_card(card))
    return card


def open_clip_config() -> dict:
    """open_clip's folder-config layout (model_cfg + preprocess_cfg), loadable as `open_clip:<this file>`."""
    return {
        "model_cfg": recipe.STUDENT_CONFIG,
        "preprocess_cfg": {
            "size": recipe.IMAGE_SIZE,
            "mean": list(recipe.MEAN),
            "std": list(recipe.STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }


def render_card(card: dict) -> str:
    s, t = card["heldout_recall"]["student_fp32"], card["heldout_recall"]["teacher_fp32"]

    def row(name, r):
        return (
            f"| {name} | {r['t2i_r1']:.3f} | {r['t2i_r5']:.3f} | {r['t2i_r10']:.3f} | "
            f"{r['i2t_r1']:.3f} | {r['i2t_r5']:.3f} | {r['i2t_r10']:.3f} |"
        )

    return "\n".join(
        [
            f"# Model card: {card['name']}",
            "",
            "The embedded default student of mcad-export: a small open_clip dual encoder distilled",
            "MCAD-style from a larger teacher on procedurally generated captioned scenes.",
            "",
            f"- Architecture: {card['architecture']}; {card['params_million']} M parameters, stored fp16.",
            f"- Teacher: {card['teacher_params_million']} M parameters (wider, deeper ViT and text towers).",
            f"- Data: {card['data']['train_images']} training scenes (shapes x colours x sizes x 3x3 positions x "
            f"backgrounds, 1-2 objects, {card['data']['caption_templates']} caption templates), rendered from fixed seeds "
            "by `mcad_export.data.scenes`.",
            f"- Losses: teacher {card['losses']['teacher']}; student {card['losses']['student']}.",
            f"- Steps: teacher {card['steps']['teacher']}, student {card['steps']['student']}, batch "
            f"{card['steps']['batch']}, AdamW lr {card['steps']['lr']} cosine.",
            f"- Trained in {card['train_seconds']} s on {card['trained_on']}.",
            "",
            f"## Held-out retrieval ({card['data']['heldout_images']} images, one caption each, fp32, 77-token context)",
            "",
            "| model | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 |",
            "|---|---|---|---|---|---|---|",
            row("student", s),
            row("teacher", t),
            "",
            *(
                [
                    "Note: the teacher gets fewer steps than the student so the whole retrain fits in 30 minutes on two "
                    "CPU cores, and it ends below the student on held-out recall. Here the KL and feature-alignment "
                    "terms act more as a regulariser than as a transfer of extra capacity; a longer teacher run "
                    "(`--teacher-steps`) is the lever for a stronger teacher.",
                    "",
                ]
                if t["t2i_r1"] < s["t2i_r1"]
                else []
            ),
            "Retrain: `.venv/bin/mcad-export train-student` (writes this folder atomically).",
            "",
        ]
    )


if __name__ == "__main__":  # pragma: no cover - the CLI is the supported entry
    import sys

    def _print(stage, step, total, loss):
        if step % 25 == 0 or step == total:
            print(f"{stage} {step}/{total} loss {loss:.3f}", flush=True)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(json.dumps(retrain(Path(sys.argv[1]), progress=_print), indent=2))
