"""Real (not random-noise) inputs for parity checks of students we know nothing about."""

from __future__ import annotations

import numpy as np

from .scenes import SCENE_KINDS, caption_at, render, render_split, scene_at

# Captions that exercise the tokenizer and the EOT position: short, long (truncated), unicode.
VARIED_CAPTIONS = (
    "a photo of a dog",
    "two cats sleeping on a red sofa next to an open window",
    "Ünïcödé café, naïve façade — 東京の夜景 😀",
    "a diagram",
    "",
    "a very long description of a crowded market street at dusk with lanterns, bicycles, fruit stalls, "
    "vendors calling out prices, children running between the stands, and a tram passing in the distance "
    "while rain begins to fall on the cobblestones",
    "&lt;b&gt;bold&lt;/b&gt; HTML entities &amp; symbols",
    "ALL CAPS TEXT WITH NUMBERS 12345",
)


def load_samples(kind: str, split: str, count: int, image_size: int) -> tuple[list, list[str]]:
    """A reproducible set of real inputs, named in the manifest so any later stage can rebuild it.

    kind "scenes": the embedded student's own captioned scenes (captions identify images, so
    recall is meaningful); "scenes_zh" the same scenes captioned in Chinese, "scenes_bilingual" alternating English
    and Chinese (scenes.SCENE_KINDS). kind "varied": the same scenes at arbitrary aspect ratios with a mix of
    scene captions and unrelated/unicode/long captions, for students of unknown domain.
    """
    if kind in SCENE_KINDS:
        images, captions = render_split(split, count, image_size, language=SCENE_KINDS[kind])
        return list(images), captions
    if kind == "varied":
        return varied_samples(count, image_size, split)
    raise ValueError(f"unknown sample kind {kind!r}")


def varied_samples(count: int, image_size: int, split: str = "calib", seed: int = 0) -> tuple[list, list[str]]:
    """Rendered scenes (with a random photo-like crop/aspect) and a mix of captions."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, captions = [], []
    for i in range(count):
        canvas = render(scene_at(split, i), size=max(image_size, 64))
        # Non-square sizes exercise resize + centre-crop like real photos do.
        w = int(image_size * rng.uniform(1.0, 1.5))
        canvas = canvas.resize((w, image_size), Image.BICUBIC)
        images.append(np.asarray(canvas))
        captions.append(VARIED_CAPTIONS[i % len(VARIED_CAPTIONS)] if i % 2 else caption_at(split, i))
    return images, captions
