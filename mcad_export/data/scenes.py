"""Procedurally generated captioned scenes: the embedded student's data.

Every image is rendered deterministically from (split seed, index), so the training,
calibration and held-out splits can be regenerated bit-for-bit anywhere. Captions name
every attribute that was drawn (shape, colour, size, grid cell, background), so a
held-out caption identifies its image up to the rare exact-duplicate scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "pink": (245, 130, 190),
}
BACKGROUNDS = {"black": (15, 15, 15), "white": (245, 245, 245), "gray": (128, 128, 128)}
SIZES = {"small": 0.17, "large": 0.30}  # radius as a fraction of a grid cell's side x 2
CELLS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")

# The same attributes in Chinese (issue 31): a Chinese or bilingual student reads these captions.
SHAPES_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "diamond": "菱形", "cross": "十字"}
COLOURS_ZH = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "cyan": "青色",
    "pink": "粉色",
}
BACKGROUNDS_ZH = {"black": "黑色", "white": "白色", "gray": "灰色"}
SIZES_ZH = {"small": "小", "large": "大"}
CELLS_ZH = ("左上角", "上方", "右上角", "左边", "中间", "右边", "左下角", "下方", "右下角")
LANGUAGES = ("en", "zh")

# Distinct, fixed seeds per split keep the splits disjoint in practice and reproducible.
SPLIT_SEEDS = {"train": 1_000_003, "calib": 2_000_003, "heldout": 3_000_017}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cell: int


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[SceneObject, ...]
    jitter: tuple[tuple[float, float], ...]

    def caption(self, template: int = 0, language: str = "en") -> str:
        if language == "zh":
            return self._caption_zh(template)
        if language != "en":
            raise ValueError(f"scene captions are in {' or '.join(LANGUAGES)}, not {language!r}")
        parts = [f"a {o.size} {o.colour} {o.shape} {_where(o.cell)}" for o in self.objects]
        things = " and ".join(parts)
        if template % 3 == 0:
            return f"{things} on a {self.background} background"
        if template % 3 == 1:
            return f"a {self.background} background with {things}"
        return f"{things}, {self.background} background"

    def _caption_zh(self, template: int) -> str:
        things = "，".join(
            f"{CELLS_ZH[o.cell]}有一个{SIZES_ZH[o.size]}的{COLOURS_ZH[o.colour]}{SHAPES_ZH[o.shape]}"
            for o in self.objects
        )
        background = BACKGROUNDS_ZH[self.background]
        if template % 3 == 0:
            return f"{things}，{background}背景"
        if template % 3 == 1:
            return f"{background}背景上，{things}"
        return f"{things}，背景是{background}"


def _where(cell: int) -> str:
    name = CELLS[cell]
    return "in the center" if name == "center" else f"at the {name}"


def sample_scene(rng: np.random.Generator) -> Scene:
    n_objects = 1 + int(rng.random() < 0.5)
    cells = rng.choice(len(CELLS), size=n_objects, replace=False)
    cells.sort()  # reading order, so captions list objects top-left to bottom-right
    objects = tuple(
        SceneObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            colour=list(COLOURS)[rng.integers(len(COLOURS))],
            size=list(SIZES)[rng.integers(len(SIZES))],
            cell=int(c),
        )
        for c in cells
    )
    jitter = tuple((float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12))) for _ in objects)
    return Scene(background=list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], objects=objects, jitter=jitter)


def render(scene: Scene, size: int = 64) -> Image.Image:
    # Draw at 4x and downsample: anti-aliased edges make shapes look like photos of shapes,
    # not pixel art, and exercise the same resize path real images take.
    big = size * 4
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    cell = big / 3
    for obj, (jx, jy) in zip(scene.objects, scene.jitter):
        row, col = divmod(obj.cell, 3)
        cx, cy = (col + 0.5 + jx) * cell, (row + 0.5 + jy) * cell
        r = SIZES[obj.size] * cell
        _draw_shape(draw, obj.shape, cx, cy, r, COLOURS[obj.colour])
    return img.resize((size, size), Image.LANCZOS)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(pts, fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "cross":
        w = r * 0.36
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(shape)


def scene_at(split: str, index: int) -> Scene:
    return sample_scene(np.random.default_rng([SPLIT_SEEDS[split], index]))


def caption_at(split: str, index: int, language: str = "en") -> str:
    # The template depends on the index so held-out captions vary in wording too.
    return scene_at(split, index).caption(template=index, language=language)


# Evaluation sample kinds of the scene data (manifest `evaluation.samples`): the caption language each one reads.
SCENE_KINDS = {"scenes": "en", "scenes_zh": "zh", "scenes_bilingual": "bilingual"}


def scene_caption(kind: str, split: str, index: int) -> str:
    """Scene `index`'s caption as evaluation kind `kind` writes it."""
    return caption_at(split, index, language_at(SCENE_KINDS[kind], index))


def caption_languages(kind: str, count: int) -> np.ndarray | None:
    """Each evaluation caption's language when the set holds more than one (the gate then judges each), else None."""
    if SCENE_KINDS.get(kind) != "bilingual":
        return None
    return np.array([bilingual_language(i) for i in range(count)])


def language_at(language: str, index: int) -> str:
    """Caption `index`'s language in a set captioned in `language` ("en", "zh" or "bilingual")."""
    return bilingual_language(index) if language == "bilingual" else language


def bilingual_language(index: int) -> str:
    """The language of scene `index`'s caption in a bilingual evaluation set: alternating, so each language holds
    half the captions and every image keeps exactly one (recall's one-caption-per-image pairing)."""
    return LANGUAGES[index % 2]


def render_split(
    split: str, count: int, size: int = 64, start: int = 0, language: str = "en"
) -> tuple[np.ndarray, list[str]]:
    """Images as uint8 [count, size, size, 3] and one caption per image, in `language` ("en", "zh", or "bilingual":
    alternating, bilingual_language)."""
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    captions = []
    for k in range(count):
        i = start + k
        scene = scene_at(split, i)
        images[k] = np.asarray(render(scene, size))
        captions.append(scene.caption(template=i, language=language_at(language, i)))
    return images, captions


def write_gallery(split: str, count: int, folder, size: int = 64, language: str = "en") -> list[str]:
    """Writes the split as PNG files plus captions.txt; returns the file names in order."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, captions = render_split(split, count, size, language=language)
    names = []
    for i, img in enumerate(images):
        name = f"{split}_{i:05d}.png"
        Image.fromarray(img).save(folder / name)
        names.append(name)
    (folder / "captions.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
    return names
