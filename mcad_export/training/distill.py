"""Teacher training and MCAD-style distillation of the embedded student.

Training runs the text tower on the captions' real length (the causal mask and EOT pooling
make positions after EOT irrelevant), which is exactly equivalent to the 77-token forward the
export uses and about 3x cheaper on two CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.scenes import render_split, scene_at
from . import recipe


@dataclass
class Split:
    pixels: torch.Tensor  # uint8 [N, 3, S, S]
    tokens: torch.Tensor  # int64 [N, templates, L_train]


def tokenize_captions(tokenizer, split: str, count: int, templates: int) -> torch.Tensor:
    rows = []
    for i in range(count):
        scene = scene_at(split, i)
        caps = [scene.caption(t) for t in range(templates)] if templates > 1 else [scene.caption(i)]
        rows.append(tokenizer(caps))
    ids = np.stack(rows)
    used = int((ids != 0).sum(-1).max())
    return torch.from_numpy(ids[..., :used].astype(np.int64))


def load_split(tokenizer, split: str, count: int, templates: int = 1) -> Split:
    images, _ = render_split(split, count, recipe.IMAGE_SIZE)
    return Split(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), tokenize_captions(tokenizer, split, count, templates)
    )


_MEAN = torch.tensor(recipe.MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(recipe.STD).view(1, 3, 1, 1)


def normalise(pixels_u8: torch.Tensor) -> torch.Tensor:
    return (pixels_u8.float() / 255.0 - _MEAN) / _STD


def encode_text_short(model, ids: torch.Tensor) -> torch.Tensor:
    length = ids.shape[1]
    x = model.token_embedding(ids) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(ids.shape[0]), ids.argmax(-1)] @ model.text_projection
    return F.normalize(x, dim=-1)


def _optimizer(model, lr: float):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )


def _lr_at(step: int, total: int, lr: float = recipe.LR, warmup: int = recipe.WARMUP) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def scheduled_steps(opt, settings: dict, generator: torch.Generator, progress, losses: list):
    """The packaged students' shared loop: yields (step, row indices of its batch) with the step's learning rate
    set (warmup, then cosine) and a fresh permutation of the `train_images` rows per epoch; the caller computes the
    step's loss and passes it to `descend`. Progress every 50 steps from `losses`."""
    n, batch, steps = settings["train_images"], settings["batch"], settings["steps"]
    order, pos = torch.randperm(n, generator=generator), 0
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, settings["lr"], settings["warmup"])
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + batch]
        pos += batch
        yield step, idx
        if progress and (step + 1) % 50 == 0:
            progress(f"  step {step + 1}/{steps} loss {np.mean(losses[-50:]):.4f}")


def descend(opt, loss, losses: list) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(float(loss.detach()))


def _batches(split: Split, steps: int, generator: torch.Generator):
    n = split.pixels.shape[0]
    templates = split.tokens.shape[1]
    order = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos + recipe.BATCH > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + recipe.BATCH]
        pos += recipe.BATCH
        which = torch.randint(templates, (len(idx),), generator=generator)
        ids = split.tokens[idx, which]
        ids = ids[:, : int((ids != 0).sum(-1).max())]
        yield normalise(split.pixels[idx]), ids


def clip_loss(img, txt, scale):
    logits = scale * img @ txt.T
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2, logits


def train(
    model,
    split: Split,
    steps: int,
    teacher=None,
    progress=None,
    label="train",
    *,
    lr: float = recipe.LR,
    warmup: int = recipe.WARMUP,
) -> list[float]:
    """Contrastive training; with a teacher, adds MCAD's KL term and, where both embed into the same width,
    the feature-alignment term (a teacher of another width has no common space without a projector)."""
    generator = torch.Generator().manual_seed(recipe.SEED)
    opt = _optimizer(model, lr)
    model.train()
    losses = []
    for step, (pixels, ids) in enumerate(_batches(split, steps, generator)):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        img = model.encode_image(pixels, normalize=True)
        txt = encode_text_short(model, ids)
        scale = model.logit_scale.exp().clamp(max=100)
        loss, logits = clip_loss(img, txt, scale)
        if teacher is not None:
            with torch.no_grad():
                t_img = teacher.encode_image(pixels, normalize=True)
                t_txt = encode_text_short(teacher, ids)
                t_logits = teacher.logit_scale.exp().clamp(max=100) * t_img @ t_txt.T
            kl = (
                F.kl_div(F.log_softmax(logits, 1), F.log_softmax(t_logits, 1), log_target=True, reduction="batchmean")
                + F.kl_div(
                    F.log_softmax(logits.T, 1), F.log_softmax(t_logits.T, 1), log_target=True, reduction="batchmean"
                )
            ) / 2
            loss = loss + recipe.KL_WEIGHT * kl
            if t_img.shape[-1] == img.shape[-1]:
                align = (2 - (img * t_img).sum(-1).mean() - (txt * t_txt).sum(-1).mean()) / 2
                loss = loss + recipe.ALIGN_WEIGHT * align
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def embed(model, split: Split, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    imgs, txts = [], []
    for s in range(0, split.pixels.shape[0], batch):
        imgs.append(model.encode_image(normalise(split.pixels[s : s + batch]), normalize=True))
        txts.append(encode_text_short(model, split.tokens[s : s + batch, 0]))
    return torch.cat(imgs).numpy(), torch.cat(txts).numpy()
