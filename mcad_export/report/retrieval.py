"""Retrieval as a user sees it: for a few held-out captions, the top-5 images the PyTorch fp32 encoders find and the
top-5 the deployed text encoder finds, side by side, the true image marked, thumbnails embedded in the page.

Only for students whose captions identify their images (the scene data: `evaluation.samples == "scenes"`): for
other students a caption has no true image to mark. The gallery is the fp32 image embeddings of the held-out set
(as the gate ranks), so the rows show exactly what the deployed text encoder changes. Where an artifact failed the
gate and its file is still there (`quantize --no-auto`), one more row shows what its damage looks like.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

EXAMPLES = 4  # captions shown
TOP = 5
THUMB = 64


def _thumbnail(split: str, index: int) -> str:
    from ..data.scenes import render, scene_at

    buf = io.BytesIO()
    render(scene_at(split, index), THUMB).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _top(text_embeds: np.ndarray, image_embeds: np.ndarray) -> list[list[int]]:
    scores = text_embeds @ image_embeds.T
    return [[int(i) for i in np.argsort(-row, kind="stable")[:TOP]] for row in scores]


def _embed(root: Path, artifact: dict, ids: np.ndarray) -> np.ndarray:
    from ..guard import verified_artifact
    from ..runtime.encoders import feed_options, open_encoder, ort_optimization

    run = open_encoder(
        verified_artifact(root, artifact),
        artifact["runtime"],
        1,
        ort_optimization(artifact),
        **feed_options(artifact),
        expected=artifact,
    )
    out = np.asarray(run(ids), dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


def shows_retrieval(manifest: dict) -> bool:
    evaluation = manifest.get("evaluation") or {}
    from ..data.scenes import SCENE_KINDS

    return evaluation.get("samples") in SCENE_KINDS and bool(evaluation.get("recall_meaningful"))


def damage_of(manifest: dict, reference: dict, ids: np.ndarray, pixels: np.ndarray, encoder: str, embed):
    """The top-5 rows the report's example captions get when a variant the gate rejected replaces its tower
    (`embed`: its embedding function, while quantize still has its file): what its damage looks like, kept in the
    manifest because the file itself is not. None for students whose captions have no true image."""
    if not shows_retrieval(manifest):
        return None

    def unit(x):
        x = np.asarray(x, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    if encoder == "text":
        return _top(unit(embed(ids[:EXAMPLES])), reference["image_embeds"])
    return _top(reference["text_embeds"][:EXAMPLES], unit(embed(pixels)))


def examples(root: Path, manifest: dict, fidelity: list[dict]) -> dict | None:
    """The rows the report shows, or None when this student's captions have no true image to mark."""
    from ..data.scenes import scene_caption
    from ..guard import reference_embeddings
    from ..runtime.tokenizer import Tokenizer

    evaluation = manifest.get("evaluation") or {}
    if not shows_retrieval(manifest):
        return None
    deployed = (manifest.get("deployment") or {}).get("text_encoder")
    artifacts = {a["path"]: a for a in manifest["artifacts"]}
    if deployed not in artifacts:
        return None
    split = evaluation.get("split", "heldout")
    reference = reference_embeddings(root, manifest)
    picked = list(range(EXAMPLES))
    captions = [scene_caption(evaluation["samples"], split, i) for i in picked]
    ids = Tokenizer.from_artifacts(root, manifest)(captions)
    columns = {"PyTorch fp32": _top(reference["text_embeds"][picked], reference["image_embeds"])}
    columns[f"deployed: {deployed}"] = _top(_embed(root, artifacts[deployed], ids), reference["image_embeds"])
    failed = next(
        (
            r["artifact"]
            for r in fidelity
            if r.get("passed") is False
            and r.get("encoder") == "text"
            and r["artifact"] in artifacts
            and (root / r["artifact"]).is_file()
        ),
        None,
    )
    damage = _top(_embed(root, artifacts[failed], ids[:1]), reference["image_embeds"])[0] if failed else None
    label = f"failed the gate: {failed}" if failed else None
    if damage is None:  # a variant quantize rejected (its file is gone): the rows it recorded
        rejected = next((r for r in (manifest.get("quantization") or {}).get("rejected", []) if r.get("damage")), None)
        if rejected:
            label, damage = f"rejected by quantize: {rejected['path']}", rejected["damage"][0]
    rows = [
        {"caption": caption, "true": index, "found": {name: top[k] for name, top in columns.items()}}
        for k, (index, caption) in enumerate(zip(picked, captions))
    ]
    damage_row = (
        None
        if damage is None
        else {
            "caption": captions[0],
            "true": picked[0],
            "found": {"PyTorch fp32": rows[0]["found"]["PyTorch fp32"], label: damage},
        }
    )
    shown = {i for row in [*rows, *([damage_row] if damage_row else [])] for top in row["found"].values() for i in top}
    return {
        "split": split,
        "gallery": len(reference["image_embeds"]),
        "rows": rows,
        "damage": damage_row,
        "thumbnails": {str(i): _thumbnail(split, i) for i in sorted(shown | set(picked))},
    }
